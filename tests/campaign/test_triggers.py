"""Triggered campaigns: customers enter on transitions, within re-entry and cooldown rules."""

from __future__ import annotations

from datetime import timedelta

from services.campaign import scheduler
from services.campaign.launch import launch
from shared.db import Database
from tests.campaign.factories import (
    NOW,
    consume,
    entries,
    feed,
    fixed,
    make_campaign,
    order_event,
    outbox,
    policy_event,
    segment_event,
    settings,
    statements,
)


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


def test_a_batch_of_customers_enters_with_one_read_and_one_write(db: Database) -> None:
    customers = [f"b{i}" for i in range(6)]
    capped = "b5"  # one contact per 30 days
    feed(db, [policy_event(c) for c in customers[:-1]])
    feed(db, [policy_event(capped, max_contacts=1, period_days=30)])
    vip = make_campaign(
        db,
        audience=None,
        trigger={"type": "segment_entered", "segment_id": "vip"},
        reentry={"allowed": True, "cooldown_days": 0},
    )
    lapsed = make_campaign(
        db, audience=None, trigger={"type": "lifecycle_transition", "to": "silent"}
    )
    launch(db, vip, settings(), now=fixed())
    launch(db, lapsed, settings(), now=fixed())
    later = NOW + timedelta(hours=1)
    batch = [
        segment_event(c, lifecycle="silent", previous_lifecycle="active", entered=["vip"])
        for c in customers
    ]
    # a second occurrence for b0 in the same batch: re-entry without cooldown lets it in again
    batch.append(segment_event("b0", entered=["vip"], segments=["vip"], as_of=later))
    with statements(db) as seen:
        consume(db, batch)

    on_entries = [s for s in seen if "entries" in s]
    on_outbox = [s for s in seen if "outbox" in s]
    # earlier entries, recent contacts, then one insert: not two queries per customer
    assert len(on_entries) == 3 and on_entries[-1].startswith("INSERT INTO entries")
    assert len(on_outbox) == 1 and on_outbox[0].startswith("INSERT INTO outbox")

    vip_entries, lapsed_entries = entries(db, vip), entries(db, lapsed)
    assert set(vip_entries) == set(lapsed_entries) == set(customers)
    assert vip_entries["b0"].entry_no == 1  # b0's second entry (the dict keeps the last row)
    # the vip message earlier in the batch counts toward b5's cap in the other campaign
    assert (vip_entries[capped].outcome, lapsed_entries[capped].reason) == (
        "sent",
        "frequency_cap",
    )
    sent = [e.data for e in outbox(db)]
    assert [m.campaign_id for m in sent] == [vip] * 7 + [lapsed] * 5
    assert [m.customer_id for m in sent[:7]] == [*customers, "b0"]
    assert len({m.message_id for m in sent}) == 12
