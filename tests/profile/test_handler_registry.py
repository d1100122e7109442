"""Profile's handler registry: the types and topics it consumes come from it, and a poll
batch of the main loop is one fold."""

from __future__ import annotations

from devtools.testing import as_inbound
from services.profile import consumer, consuming
from services.profile.handlers import HANDLERS, SIDE_TOPICS
from shared.registry import Step
from tests.profile.profile_factories import order, segment_changed


def test_the_registry_is_the_only_dispatch_of_what_profile_consumes() -> None:
    assert set(consumer.CONSUMED_TOPICS) == {cls.topic for cls in HANDLERS.handlers}
    # the main loop leaves key usage, export parts and erasure acks to their own loops
    assert set(consumer.EVENT_TOPICS).isdisjoint(SIDE_TOPICS)
    assert set(consumer.EVENT_TOPICS) | set(SIDE_TOPICS) == set(consumer.CONSUMED_TOPICS)
    # every event type of the contract on those topics is handled or declared ignored
    assert HANDLERS.unclaimed() == set()
    # the main loop's types are steps of the one fold, each noting what it touches first
    for entry in HANDLERS.without_topics(*SIDE_TOPICS).handlers.values():
        assert isinstance(entry, Step) and entry.kind is consuming.FOLD and entry.note


def test_one_poll_batch_is_one_run_of_the_profile_fold() -> None:
    runs = list(
        HANDLERS.runs(
            [
                as_inbound(order("c1", "o1"), 0),
                as_inbound(segment_changed("c1", minutes=2), 1),
                as_inbound(order("c2", "o2"), 2),
            ]
        )
    )
    assert [(kind, len(run)) for kind, run in runs] == [(consuming.FOLD, 3)]
