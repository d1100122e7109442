"""Segment's handler registry: the types and topics it consumes come from it, and a type
reaching the batch that the batch does not apply fails loudly."""

from __future__ import annotations

import pytest

from services.segment import consumer
from services.segment.handlers import HANDLERS, score_batch
from shared import topics
from shared.events import ContactPolicy, ContactPolicyChangedEvent
from shared.registry import Registry
from tests.segment.helpers import NOW, database, erased, inbound, order, recorded


def test_the_registry_acts_on_exactly_the_types_segment_scores() -> None:
    assert HANDLERS.event_types == {
        "order.recorded",
        "profile.merged",
        "profile.unmerged",
        "profile.erased",
    }
    assert set(consumer.CONSUMED_TOPICS) == {topics.ORDERS, topics.PROFILES}
    # every event type of the contract on those topics is handled or declared ignored
    assert HANDLERS.unclaimed() == set()


def test_a_type_registered_but_not_applied_fails_loudly(db_url: str) -> None:
    db = database(db_url)
    wrong: Registry[object] = Registry({ContactPolicyChangedEvent: score_batch})
    policy = ContactPolicyChangedEvent(source="t", key="c1", data=ContactPolicy(customer_id="c1"))
    try:
        with (
            pytest.raises(TypeError, match=r"profile\.contact_policy_changed"),
            db.unit_of_work() as session,
        ):
            wrong.dispatch(session, [inbound(policy)], lambda: NOW)
    finally:
        db.dispose()


def test_the_registry_batch_scores_orders_and_marks_erasures(db_url: str) -> None:
    db = database(db_url)
    messages = [recorded(order("o1", "c1", days_ago=3, amount="10.00")), erased("c2")]
    try:
        with db.unit_of_work() as session:
            HANDLERS.batch_handler(lambda: NOW)(session, messages)
        assert [m.checkpoint_after_commit for m in messages] == [False, True]
    finally:
        db.dispose()
