"""Profile's handler registry: the types and topics it consumes come from it, and a type
reaching the batch that the batch does not apply fails loudly."""

from __future__ import annotations

import pytest

from devtools.testing import as_inbound
from services.profile import consumer
from services.profile.config import Settings
from services.profile.handlers import HANDLERS, apply_profile_events
from shared import topics
from shared.db import Database
from shared.events import ContactPolicy, ContactPolicyChangedEvent
from shared.registry import Registry
from tests.profile.profile_factories import order, segment_changed


def test_the_registry_acts_on_exactly_the_types_profile_consumes() -> None:
    assert HANDLERS.event_types == {
        "customer.recorded",
        "order.recorded",
        "interaction.recorded",
        "segment.changed",
        "apikey.used",
        "export.part_recorded",
        "erasure.applied",
    }
    assert set(consumer.CONSUMED_TOPICS) == {
        topics.CUSTOMERS,
        topics.ORDERS,
        topics.INTERACTIONS,
        topics.SEGMENTS,
        topics.APIKEY_USAGE,
        topics.EXPORT_PARTS,
        topics.ERASURES_APPLIED,
    }
    # the main loop leaves key usage, export parts and erasure acks to their own loops
    assert topics.APIKEY_USAGE not in consumer.EVENT_TOPICS
    assert topics.EXPORT_PARTS not in consumer.EVENT_TOPICS
    assert topics.ERASURES_APPLIED not in consumer.EVENT_TOPICS
    # every event type of the contract on those topics is handled or declared ignored
    assert HANDLERS.unclaimed() == set()


def test_a_type_registered_but_not_applied_fails_loudly(db: Database, settings: Settings) -> None:
    wrong: Registry[Settings] = Registry({ContactPolicyChangedEvent: apply_profile_events})
    policy = ContactPolicyChangedEvent(source="t", key="c1", data=ContactPolicy(customer_id="c1"))
    with (
        pytest.raises(TypeError, match=r"profile\.contact_policy_changed"),
        db.unit_of_work() as session,
    ):
        wrong.dispatch(session, [as_inbound(policy)], settings)


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
    assert [(handler, len(run)) for handler, run in runs] == [(apply_profile_events, 3)]
