"""Campaign's handler registry: the types and topics it consumes come from it, and a type
reaching the audience projection that it does not apply fails loudly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devtools.testing import as_inbound
from services.campaign import consumer
from services.campaign.handlers import HANDLERS, PollBatch, apply_audience, apply_orders
from shared import topics
from shared.db import Database
from shared.events import OrderRecordedEvent
from shared.registry import Registry
from tests.campaign.factories import order_event, policy_event, segment_event, settings

PAID = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_registry_acts_on_exactly_the_types_campaign_consumes() -> None:
    assert HANDLERS.event_types == {
        "segment.changed",
        "segment.deleted",
        "profile.contact_policy_changed",
        "profile.erased",
        "profile.merged",
        "profile.unmerged",
        "profile.updated",
        "order.recorded",
        "campaign.receipt_recorded",
    }
    assert set(consumer.CONSUMED_TOPICS) == {
        topics.SEGMENTS,
        topics.PROFILES,
        topics.ORDERS,
        topics.CAMPAIGN_RECEIPTS,
    }
    # every event type of the contract on those topics is handled or declared ignored
    assert HANDLERS.unclaimed() == set()


def test_a_type_registered_but_not_applied_fails_loudly(db: Database) -> None:
    wrong: Registry[PollBatch] = Registry({OrderRecordedEvent: apply_audience})
    batch = PollBatch(settings(), frozenset())
    with pytest.raises(TypeError, match=r"order\.recorded"), db.unit_of_work() as session:
        wrong.dispatch(session, [as_inbound(order_event("o1", "c1", PAID))], batch)


def test_consecutive_audience_events_are_one_run_in_topic_order() -> None:
    events = [
        segment_event("c1"),
        policy_event("c1"),
        order_event("o1", "c1", PAID),
        segment_event("c2"),
    ]
    runs = HANDLERS.runs([as_inbound(e, i) for i, e in enumerate(events)])
    assert [(handler, [m.offset for m in run]) for handler, run in runs] == [
        (apply_audience, [0, 1]),
        (apply_orders, [2]),
        (apply_audience, [3]),
    ]
