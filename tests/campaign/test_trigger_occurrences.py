"""Triggers miss nobody: first purchases whatever the batching, unpaid orders from before
the start (within the lookback), never an order paid or cancelled meanwhile."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.campaign import scheduler, service
from services.campaign.launch import launch
from services.campaign.projection_repository import Projections
from services.campaign.report import build_report
from shared.db import Database
from shared.events import Address, Order, OrderRecordedEvent
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
)


def _first_purchase_campaign(db: Database) -> str:
    campaign_id = make_campaign(db, audience=None, trigger={"type": "first_purchase"})
    launch(db, campaign_id, settings(), now=fixed())
    return campaign_id


def test_two_first_orders_in_one_batch_enter_the_customer_once(db: Database) -> None:
    feed(db, [policy_event("c1"), policy_event("c2"), policy_event("c3")])
    campaign_id = _first_purchase_campaign(db)
    later = NOW + timedelta(hours=1)
    batch = [
        order_event("o1b", "c1", later + timedelta(minutes=5)),  # the second, listed first
        order_event("o1a", "c1", later),
        # a split order: both parts in one batch
        order_event("o2a", "c2", later),
        order_event("o2b", "c2", later),
    ]
    consume(db, batch)
    consume(db, batch)  # a replay of the same batch
    consume(db, [order_event(o.data.order_id, o.key, o.data.paid_at) for o in batch])  # again
    found = entries(db, campaign_id)
    assert set(found) == {"c1", "c2"}
    assert found["c1"].trigger_key == "first_purchase:o1a"  # the earliest purchase
    assert len(outbox(db)) == 2
    # a customer whose two orders arrive one batch apart: entered at the first only
    consume(db, [order_event("o3a", "c3", later)])
    consume(db, [order_event("o3b", "c3", later + timedelta(days=1))])
    assert set(entries(db, campaign_id)) == {"c1", "c2", "c3"}
    assert len(outbox(db)) == 3


def test_an_unpaid_order_then_its_payment_in_one_batch_is_a_first_purchase(db: Database) -> None:
    feed(db, [policy_event("c1")])
    campaign_id = _first_purchase_campaign(db)
    at = NOW + timedelta(hours=2)
    consume(
        db,
        [
            order_event("o1", "c1", None, status="created", updated_at=at),
            order_event("o1", "c1", at, status="paid", updated_at=at + timedelta(minutes=1)),
            order_event("o2", "c1", at, status="cancelled", updated_at=at),  # no purchase
        ],
    )
    assert set(entries(db, campaign_id)) == {"c1"}


def _unpaid(order_id: str, customer_id: str, created_at: datetime, status: str = "created"):
    return OrderRecordedEvent(
        source="ingest",
        key=customer_id,
        data=Order(
            order_id=order_id,
            customer_id=customer_id,
            status=status,  # type: ignore[arg-type]
            created_at=created_at,
            paid_at=created_at + timedelta(hours=1) if status == "paid" else None,
            updated_at=created_at + (timedelta(hours=1) if status != "created" else timedelta(0)),
            currency="CNY",
            total_amount=Decimal("80.00"),
        ),
    )


def test_unpaid_orders_already_overdue_at_the_start_are_reminded_within_the_lookback(
    db: Database,
) -> None:
    customers = ["c1", "c2", "c3", "c4", "c5"]
    feed(db, [policy_event(c) for c in customers])
    consume(
        db,
        [
            _unpaid("u1", "c1", NOW - timedelta(hours=10)),  # overdue 8 h at the start
            _unpaid("u2", "c2", NOW - timedelta(hours=30)),  # overdue 28 h: beyond 24 h
            _unpaid("u3", "c3", NOW - timedelta(hours=5)),
            _unpaid("u3", "c3", NOW - timedelta(hours=5), status="paid"),  # paid meanwhile
            _unpaid("u4", "c4", NOW - timedelta(hours=6)),
            _unpaid("u4", "c4", NOW - timedelta(hours=6), status="cancelled"),
            _unpaid("u5", "c5", NOW - timedelta(hours=1)),  # overdue an hour after the start
        ],
    )
    default = make_campaign(
        db,
        purpose="payment_reminder",
        audience=None,
        trigger={"type": "unpaid_order", "older_than_hours": 2},
    )
    wider = make_campaign(
        db,
        purpose="payment_reminder",
        audience=None,
        trigger={"type": "unpaid_order", "older_than_hours": 2, "lookback_hours": 48},
    )
    for campaign_id in (default, wider):
        launch(db, campaign_id, settings(), now=fixed())
    scheduler.tick(db, settings(), now=fixed(NOW + timedelta(minutes=1)))
    assert set(entries(db, default)) == {"c1"}
    assert set(entries(db, wider)) == {"c1", "c2"}
    for hours in (2, 3, 30):  # later ticks: c5 crosses the age; nobody is reminded twice
        scheduler.tick(db, settings(), now=fixed(NOW + timedelta(hours=hours)))
    assert set(entries(db, default)) == {"c1", "c5"}
    assert set(entries(db, wider)) == {"c1", "c2", "c5"}
    reminded = [(m.data.campaign_id, m.data.customer_id) for m in outbox(db)]
    assert sorted(reminded) == sorted(
        [(default, "c1"), (default, "c5"), (wider, "c1"), (wider, "c2"), (wider, "c5")]
    )


def test_skipped_occurrences_are_counted_by_reason_once_each(db: Database) -> None:
    feed(db, [policy_event("c1"), policy_event("c2")])
    trigger = {"type": "lifecycle_transition", "from": "active", "to": "silent"}
    narrow = make_campaign(db, audience={"segment_id": "s1"}, trigger=trigger)
    cooling = make_campaign(
        db, audience=None, trigger=trigger, reentry={"allowed": True, "cooldown_days": 30}
    )
    for campaign_id in (narrow, cooling):
        launch(db, campaign_id, settings(), now=fixed())

    def silent(customer: str, days: int, segments: list[str]) -> Any:
        return segment_event(
            customer,
            lifecycle="silent",
            previous_lifecycle="active",
            segments=segments,
            as_of=NOW + timedelta(days=days),
        )

    first = [silent("c1", 1, ["s1"]), silent("c2", 1, [])]
    again = [silent("c1", 5, ["s1"])]  # a new occurrence for c1 four days later
    consume(db, first)
    consume(db, again)
    consume(db, first + again)  # everything delivered twice
    assert set(entries(db, narrow)) == {"c1"}
    assert set(entries(db, cooling)) == {"c1", "c2"}
    with db.unit_of_work() as session:
        reports = {
            c: build_report(session, service.get_campaign(session, c), NOW)
            for c in (narrow, cooling)
        }
    assert reports[narrow].skipped_triggers == {
        "not_in_audience": 1,  # c2
        "reentry_not_allowed": 1,  # c1's second move
        "cooldown": 0,
        "too_old": 0,
    }
    assert reports[cooling].skipped_triggers == {
        "not_in_audience": 0,
        "reentry_not_allowed": 0,
        "cooldown": 1,  # c1's second move, inside 30 days
        "too_old": 0,
    }


def test_a_welcome_on_the_first_order_renders_the_province_and_city_it_shipped_to(
    db: Database,
) -> None:
    # c1: campaign knows the contact policy but no address yet; profile has not spoken
    feed(db, [policy_event("c1")])
    campaign_id = make_campaign(
        db,
        audience=None,
        trigger={"type": "first_purchase"},
        content={"template": "{{ province }}{{ city }}的新朋友, 欢迎"},
    )
    launch(db, campaign_id, settings(), now=fixed())
    paid = _unpaid("o1", "c1", NOW + timedelta(hours=1), status="paid")
    shipped = paid.data.model_copy(update={"shipping": Address(province="浙江省", city="杭州市")})
    consume(
        db,
        [
            OrderRecordedEvent(
                source="ingest", key="c1", data=shipped, occurred_at=shipped.updated_at
            )
        ],
    )
    [message] = outbox(db)
    assert message.data.content == "浙江省杭州市的新朋友, 欢迎"
    assert message.data.variables == {"province": "浙江省", "city": "杭州市"}
    with db.unit_of_work() as session:
        member = Projections(session).audience_rows(["c1"])["c1"]
        assert (member.province, member.city) == ("浙江省", "杭州市")


def test_first_purchase_skips_imported_history_as_too_old(db: Database) -> None:
    feed(db, [policy_event(c) for c in ("old", "recent", "late", "wide")])
    welcome = make_campaign(db, audience=None, trigger={"type": "first_purchase"})
    wide = make_campaign(
        db, audience=None, trigger={"type": "first_purchase", "lookback_hours": 24 * 90}
    )
    launch(db, welcome, settings(), now=fixed())
    launch(db, wide, settings(), now=fixed())

    def arriving(order_id: str, customer_id: str, paid_ago: timedelta) -> OrderRecordedEvent:
        event = order_event(order_id, customer_id, NOW - paid_ago)
        return event.model_copy(update={"occurred_at": NOW})  # recorded by ingest now

    imported = arriving("o-old", "old", timedelta(days=60))  # months-old history, imported
    # twice: a redelivery is the same occurrence, counted once
    consume(
        db,
        [
            imported,
            imported,
            arriving("o-recent", "recent", timedelta(hours=2)),
            arriving("o-late", "late", timedelta(hours=73)),
        ],
    )
    consume(db, [imported])
    with db.unit_of_work() as session:
        reports = {
            c: build_report(session, service.get_campaign(session, c), NOW) for c in (welcome, wide)
        }
    entered = {c: set(entries(db, c)) for c in (welcome, wide)}
    assert entered[welcome] == {"recent"}
    assert reports[welcome].skipped_triggers["too_old"] == 2  # old and late
    # a trigger with a 90-day lookback welcomes them all
    assert entered[wide] == {"old", "recent", "late"}
    assert reports[wide].skipped_triggers["too_old"] == 0
