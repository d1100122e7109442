"""Campaign's handler registry: the types and topics it consumes come from it, and the
audience events are steps of one projection run."""

from __future__ import annotations

from datetime import UTC, datetime

from devtools.testing import as_inbound
from services.campaign import consumer, projection
from services.campaign.handlers import HANDLERS, VIEWS, apply_orders
from shared.registry import Step, event_type_of
from tests.campaign.factories import order_event, policy_event, segment_event

PAID = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_registry_is_the_only_dispatch_of_what_campaign_consumes() -> None:
    assert set(consumer.CONSUMED_TOPICS) == {cls.topic for cls in HANDLERS.handlers}
    # every event type of the contract on those topics is handled or declared ignored
    assert HANDLERS.unclaimed() == set()
    assert {event_type_of(view) for view in VIEWS} <= HANDLERS.event_types
    # a step applies one type into a run; a run handler takes one type (no second dispatch)
    steps = [e for e in HANDLERS.handlers.values() if isinstance(e, Step)]
    batch_handlers = [e for e in HANDLERS.handlers.values() if not isinstance(e, Step)]
    assert len(batch_handlers) == len(set(batch_handlers))
    # every audience step notes whom it touches: the run loads their rows before applying
    assert steps and all(s.kind is projection.AUDIENCE and s.note is not None for s in steps)


def test_consecutive_audience_events_are_one_run_in_topic_order() -> None:
    events = [
        segment_event("c1"),
        policy_event("c1"),
        order_event("o1", "c1", PAID),
        segment_event("c2"),
    ]
    runs = HANDLERS.runs([as_inbound(e, i) for i, e in enumerate(events)])
    assert [(handler, [m.offset for m in run]) for handler, run in runs] == [
        (projection.AUDIENCE, [0, 1]),
        (apply_orders, [2]),
        (projection.AUDIENCE, [3]),
    ]
