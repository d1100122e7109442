"""Segment's handler registry: the types and topics it consumes come from it, it is the
only dispatch, and a poll batch is one run applied in order and scored once."""

from __future__ import annotations

from services.segment import consumer, per_event
from services.segment.handlers import HANDLERS, VIEWS, make_batch_handler
from shared.events import ContactPolicy, ContactPolicyChangedEvent
from shared.registry import Step, event_type_of
from tests.segment.helpers import NOW, database, erased, inbound, merged, order, recorded


def test_the_registry_is_the_only_dispatch_of_what_segment_scores() -> None:
    assert set(consumer.CONSUMED_TOPICS) == {cls.topic for cls in HANDLERS.handlers}
    # every event type of the contract on those topics is handled or declared ignored
    assert HANDLERS.unclaimed() == set()
    # each handled type is one step of the one scoring batch (nothing dispatches again)
    for entry in HANDLERS.handlers.values():
        assert isinstance(entry, Step) and entry.kind is per_event.SCORING
    assert {event_type_of(view) for view in VIEWS} <= HANDLERS.event_types


def test_a_poll_batch_of_every_handled_type_is_one_run_in_arrival_order() -> None:
    policy = ContactPolicyChangedEvent(source="t", key="c1", data=ContactPolicy(customer_id="c1"))
    messages = [
        recorded(order("o1", "c1", days_ago=3, amount="10.00")),
        inbound(policy),  # ignored: it neither splits the run nor reaches it
        merged("c1", "c2"),
        erased("c3"),
        recorded(order("o2", "c1", days_ago=1, amount="5.00")),
    ]
    runs = list(HANDLERS.runs(messages))
    assert [(kind, [m.offset for m in run]) for kind, run in runs] == [
        (per_event.SCORING, [m.offset for m in messages if m is not messages[1]])
    ]


def test_the_consumer_batch_scores_orders_and_marks_erasures(db_url: str) -> None:
    db = database(db_url)
    messages = [recorded(order("o1", "c1", days_ago=3, amount="10.00")), erased("c2")]
    try:
        with db.unit_of_work() as session:
            make_batch_handler(lambda: NOW)(session, messages)
        assert [m.checkpoint_after_commit for m in messages] == [False, True]
    finally:
        db.dispose()
