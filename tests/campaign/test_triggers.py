"""Triggered campaigns: customers enter on transitions, within re-entry and cooldown rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.campaign import scheduler
from services.campaign.handlers import make_batch_handler
from services.campaign.launch import launch
from shared.bus import Inbound
from shared.db import Database
from tests.campaign.factories import (
    NOW,
    entries,
    feed,
    fixed,
    make_campaign,
    order_event,
    outbox,
    policy_event,
    segment_event,
    settings,
)


def consume(db: Database, events: list[Any], **overrides: Any) -> None:
    """Run the consumer's batch handler on events, as the consumer loop would."""
    handler = make_batch_handler(settings(**overrides))
    messages = [
        Inbound("t", 0, i, e.key, b"", e.type, str(e.event_id), e) for i, e in enumerate(events)
    ]
    with db.unit_of_work() as session:
        handler(session, messages)


def test_lifecycle_transition_enters_once_without_reentry(db: Database) -> None:
    feed(db, [policy_event("c1"), policy_event("c2")])
    campaign_id = make_campaign(
        db,
        purpose="reactivation",
        audience=None,
        trigger={"type": "lifecycle_transition", "from": "active", "to": "silent"},
    )
    # not armed yet: nothing happens
    consume(db, [segment_event("c1", lifecycle="silent", previous_lifecycle="active")])
    assert entries(db, campaign_id) == {}
    assert launch(db, campaign_id, settings(), now=fixed()).status == "running"
    consume(
        db,
        [
            segment_event(
                "c1",
                lifecycle="silent",
                previous_lifecycle="active",
                as_of=NOW + timedelta(hours=1),
            ),
            segment_event("c2", lifecycle="sleeping", previous_lifecycle="silent"),  # other move
        ],
    )
    assert set(entries(db, campaign_id)) == {"c1"}
    # the same transition again later: no re-entry allowed
    consume(
        db,
        [
            segment_event(
                "c1",
                lifecycle="silent",
                previous_lifecycle="active",
                as_of=NOW + timedelta(days=40),
            )
        ],
    )
    assert len(outbox(db)) == 1


def test_reentry_respects_the_cooldown(db: Database) -> None:
    feed(db, [policy_event("c1")])
    campaign_id = make_campaign(
        db,
        audience=None,
        trigger={"type": "segment_entered", "segment_id": "vip"},
        reentry={"allowed": True, "cooldown_days": 30},
    )
    launch(db, campaign_id, settings(), now=fixed())
    consume(db, [segment_event("c1", segments=["vip"], entered=["vip"])])
    consume(
        db, [segment_event("c1", segments=["vip"], entered=["vip"], as_of=NOW + timedelta(hours=2))]
    )
    assert len(outbox(db)) == 1  # inside the 30-day cooldown
    # pretend the first entry was 31 days ago
    with db.unit_of_work() as session:
        from sqlalchemy import update

        from services.campaign.models import Entry

        session.execute(update(Entry).values(entered_at=NOW - timedelta(days=31)))
    consume(
        db, [segment_event("c1", segments=["vip"], entered=["vip"], as_of=NOW + timedelta(hours=3))]
    )
    assert [e.data.customer_id for e in outbox(db)] == ["c1", "c1"]
    assert len({e.data.message_id for e in outbox(db)}) == 2


def test_first_purchase_trigger_and_audience_filter(db: Database) -> None:
    feed(db, [policy_event("c1"), policy_event("c2"), segment_event("c2", segments=["s1"])])
    campaign_id = make_campaign(
        db, audience={"segment_id": "s1"}, trigger={"type": "first_purchase"}
    )
    launch(db, campaign_id, settings(), now=fixed())
    consume(db, [order_event("o1", "c1", NOW), order_event("o2", "c2", NOW)])
    consume(db, [order_event("o3", "c2", NOW + timedelta(days=1))])  # a second purchase
    assert set(entries(db, campaign_id)) == {"c2"}  # c1 is not in segment s1
    assert len(outbox(db)) == 1


def test_unpaid_order_older_than_n_hours(db: Database) -> None:
    feed(db, [policy_event("c1"), policy_event("c2"), policy_event("c3")])
    campaign_id = make_campaign(
        db,
        purpose="payment_reminder",
        audience=None,
        trigger={"type": "unpaid_order", "older_than_hours": 2},
    )
    launch(db, campaign_id, settings(), now=fixed())
    consume(
        db,
        [
            order_event("u1", "c1", None, status="created", updated_at=NOW),
            order_event("u2", "c2", None, status="created", updated_at=NOW),
            order_event("u2", "c2", NOW + timedelta(hours=1), status="paid"),  # paid in time
        ],
    )
    # order_event's created_at is NOW for unpaid orders
    assert scheduler.tick(db, settings(), now=fixed(NOW + timedelta(hours=1)))["triggered"] == 0
    assert scheduler.tick(db, settings(), now=fixed(NOW + timedelta(hours=3)))["triggered"] == 1
    assert scheduler.tick(db, settings(), now=fixed(NOW + timedelta(hours=4)))["triggered"] == 0
    assert [e.data.customer_id for e in outbox(db)] == ["c1"]


def test_scheduler_launches_at_time_and_completes_after_the_window(db: Database) -> None:
    feed(db, [policy_event("c1"), segment_event("c1", segments=["s1"])])
    campaign_id = make_campaign(
        db,
        schedule={"type": "at", "at": (NOW + timedelta(hours=1)).isoformat()},
        conversion_window_days=3,
    )
    from services.campaign import service

    with db.unit_of_work() as session:
        service.change_status(session, campaign_id, "scheduled")
    assert scheduler.tick(db, settings(), now=fixed(NOW))["launched"] == 0
    assert scheduler.tick(db, settings(), now=fixed(NOW + timedelta(hours=2)))["launched"] == 1
    assert scheduler.tick(db, settings(), now=fixed(NOW + timedelta(hours=3)))["launched"] == 0
    assert len(outbox(db)) == 1
    assert scheduler.tick(db, settings(), now=fixed(NOW + timedelta(days=4)))["completed"] == 1


def test_recurring_campaign_runs_again_with_cooldown(db: Database) -> None:
    feed(db, [policy_event("c1"), segment_event("c1", segments=["s1"])])
    campaign_id = make_campaign(
        db,
        schedule={"type": "recurring", "at": NOW.isoformat(), "every_hours": 24},
        reentry={"allowed": True, "cooldown_days": 2},
    )
    from services.campaign import service

    with db.unit_of_work() as session:
        service.change_status(session, campaign_id, "scheduled")
    for day in range(4):
        scheduler.tick(db, settings(), now=fixed(NOW + timedelta(days=day, minutes=1)))
    # runs on days 0, 1, 2, 3; the 2-day cooldown lets c1 in on days 0 and 2
    assert len(outbox(db)) == 2
    assert sorted(e.entry_no for e in [entries(db, campaign_id)["c1"]]) == [1]


def test_recurring_campaign_launched_by_hand_continues_on_its_schedule(db: Database) -> None:
    feed(db, [policy_event("c1"), segment_event("c1", segments=["s1"])])
    campaign_id = make_campaign(
        db,
        schedule={"type": "recurring", "every_hours": 24},
        reentry={"allowed": True, "cooldown_days": 0},
    )
    launch(db, campaign_id, settings(), now=fixed())
    assert scheduler.tick(db, settings(), now=fixed(NOW + timedelta(hours=1)))["launched"] == 0
    assert scheduler.tick(db, settings(), now=fixed(NOW + timedelta(hours=25)))["launched"] == 1
    assert len(outbox(db)) == 2
