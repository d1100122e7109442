"""The per-event path and the batch path agree; replays, duplicates and disorder give one state.

These run the service functions against a real database (SQLite and PostgreSQL), no broker.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import text

from devtools.testing import postgres_database
from services.segment import (
    changes,
    money,
    per_event,
    reads,
    rescoring,
    scoring,
    scoring_context,
    segment_admin,
)
from services.segment.changes import SNAPSHOT_WRITE_COLUMNS
from services.segment.context_repository import CutPointSets
from services.segment.cut_points import CutPoints
from services.segment.models import CutPointSet
from services.segment.policy import DEFAULT_POLICY
from services.segment.repository import ORDER_FRAME_COLUMNS, Customers, OrderStates
from services.segment.rules import Condition
from shared.events import Order, decode_event, utcnow
from tests.conftest import outbox_events
from tests.segment.helpers import NOW, database, erased, merged, order, recorded
from tests.segment.helpers import order as make_order

COMPARED = [
    "customer_id",
    "order_count",
    "total_spent_e4",
    "frequency",
    "monetary_e4",
    *scoring.SCORE_COLUMNS,
]


def history(
    seed: int = 7, customers: int = 120, rich: bool = False
) -> tuple[list[Order], list[Order]]:
    """Every version of every order (events) and the newest version of each (final states).

    ``rich``: orders also differ in currency, channel, category and province.
    """
    rng = random.Random(seed)
    events: list[Order] = []
    final: list[Order] = []
    for c in range(customers):
        for k in range(rng.choice([0, 1, 1, 2, 3, 5, 8])):
            oid = f"o{c}-{k}"
            amount = f"{rng.randint(1, 2000)}.{rng.randint(0, 99):02d}"
            days = rng.uniform(0, 500)
            facts: dict = {}
            if rich:
                facts = {
                    "currency": rng.choice(["CNY", "CNY", "USD"]),
                    "channel": rng.choice([None, "tmall", "tmall", "jd"]),
                    "category": rng.choice([None, "shoes", "bags"]),
                    "province": rng.choice([None, "浙江省", "浙江省", "广东省"]),
                }

            def order(*args, _facts=facts, **kwargs) -> Order:
                return make_order(*args, **kwargs, **_facts)

            versions = [order(oid, f"c{c:03d}", days_ago=days, amount=amount, status="created")]
            path = rng.choice(
                ["paid", "paid", "completed", "cancelled", "refunded", "partial", "created"]
            )
            if path != "created":
                status = {"partial": "partially_refunded"}.get(path, path)
                refund = "0"
                if path == "partial":
                    refund = f"{rng.randint(0, int(float(amount)))}.00"
                if path in ("completed", "refunded", "partial"):
                    versions.append(
                        order(oid, f"c{c:03d}", days_ago=days, amount=amount, status="paid")
                    )
                versions.append(
                    order(
                        oid,
                        f"c{c:03d}",
                        days_ago=days,
                        amount=amount,
                        status=status,
                        refunded=refund
                        if path == "partial"
                        else ("0" if path != "refunded" else amount),
                        version_minutes=60,
                    )
                )
            events.extend(versions)
            final.append(versions[-1])
    return events, final


def batch_reference(final: list[Order]) -> tuple[CutPoints, pd.DataFrame]:
    frame = pd.DataFrame([per_event.order_row(o, o.customer_id) for o in final])[
        ORDER_FRAME_COLUMNS
    ]
    frame["categories"] = frame["categories"].map(tuple)
    aggregates = scoring.aggregate_orders(frame, NOW, DEFAULT_POLICY)
    return scoring.rescore(aggregates, DEFAULT_POLICY, 1, NOW)


#: with the attributes that only ``rich`` histories vary
RICH = [*COMPARED, "currency", "channels", "categories", "province", "city"]


def stored_state(db, columns: list[str] = COMPARED) -> pd.DataFrame:
    with db.unit_of_work() as session:
        frame = Customers(session).aggregates_frame(extra=SNAPSHOT_WRITE_COLUMNS)
    return normalise(frame, columns)


def normalise(frame: pd.DataFrame, columns: list[str] = COMPARED) -> pd.DataFrame:
    frame = frame[columns].sort_values("customer_id").reset_index(drop=True).astype(object)
    return frame.where(frame.notna(), None).map(lambda v: int(v) if isinstance(v, float) else v)


def feed(db, events: list, chunk: int = 40) -> None:
    for start in range(0, len(events), chunk):
        with db.unit_of_work() as session:
            per_event.apply_messages(session, events[start : start + chunk], NOW)


def test_per_event_path_equals_full_batch_rescoring(db_url: str) -> None:
    events, final = history()
    cut_points, expected = batch_reference(final)
    db = database(db_url)
    with db.unit_of_work() as session:
        CutPointSets(session).add(
            CutPointSet(
                policy_version=1, as_of=NOW, computed_at=utcnow(), body=cut_points.to_json()
            )
        )
    shuffled = [recorded(o) for o in events]
    random.Random(3).shuffle(shuffled)
    feed(db, shuffled + shuffled[:50])  # out of order, and some delivered twice
    consumer_state = stored_state(db)
    pd.testing.assert_frame_equal(consumer_state, normalise(expected))
    # the batch over the stored aggregates finds the same cut points: nothing changes
    with db.unit_of_work() as session:
        outcome = rescoring.rescore_all(session, NOW)
    assert outcome.changed == 0
    assert outcome.cut_points == cut_points.to_json()
    pd.testing.assert_frame_equal(stored_state(db), consumer_state)


def test_the_paths_agree_with_mixed_currencies_channels_and_regions(db_url: str) -> None:
    """The incremental aggregates fall back to a re-aggregation exactly when they must."""
    events, final = history(seed=5, customers=80, rich=True)
    cut_points, expected = batch_reference(final)
    db = database(db_url)
    with db.unit_of_work() as session:
        CutPointSets(session).add(
            CutPointSet(
                policy_version=1, as_of=NOW, computed_at=utcnow(), body=cut_points.to_json()
            )
        )
    shuffled = [recorded(o) for o in events]
    random.Random(4).shuffle(shuffled)
    feed(db, shuffled + shuffled[:30], chunk=15)
    pd.testing.assert_frame_equal(stored_state(db, RICH), normalise(expected, RICH))


@pytest.fixture
def other_db_url(db_url: str, tmp_path) -> Iterator[str]:
    """A second fresh database on the same backend as ``db_url``."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    with postgres_database() as url:
        yield url


#: custom segments whose memberships the order changes below move
SEGMENT_RULES = {
    "big": {"field": "monetary", "op": "gte", "value": "1500"},
    "shoes": {"field": "categories", "op": "contains", "value": "shoes"},
    "usd-south": {
        "all": [
            {"field": "currency", "op": "eq", "value": "USD"},
            {"field": "province", "op": "eq", "value": "广东省"},
        ]
    },
    "regulars": {"field": "purchase_bucket", "op": "in", "value": ["2", "3", "4+"]},
}


def later_versions(final: list[Order], seed: int) -> list[Order]:
    """A newer version of some orders (paid, refunded in part or in full, cancelled) and
    new orders (some in another currency, some dated before a customer's first purchase)."""
    rng = random.Random(seed)
    changed: list[Order] = []
    for o in final:
        body = o.model_dump()
        body["updated_at"] = o.version_at + timedelta(hours=5)
        roll = rng.random()
        if o.status == "created" and roll < 0.5:
            changed.append(Order.model_validate({**body, "status": "paid"}))
        elif o.is_valid_purchase and roll < 0.15:
            refund = min(o.total_amount - o.refunded_amount, rng.choice([1, 30, 500]))
            changed.append(
                Order.model_validate(
                    {
                        **body,
                        "status": "partially_refunded",
                        "refunded_amount": o.refunded_amount + refund,
                    }
                )
            )
        elif o.is_valid_purchase and roll < 0.25:
            changed.append(Order.model_validate({**body, "status": "refunded"}))
        elif roll < 0.3:
            changed.append(Order.model_validate({**body, "status": "cancelled"}))
    customers = sorted({o.customer_id for o in final})
    for k, customer_id in enumerate(rng.sample(customers, len(customers) // 3)):
        changed.append(
            make_order(
                f"new-{k}",
                customer_id,
                days_ago=rng.choice([0.5, 3, 40, 200, 600]),
                amount=f"{rng.randint(1, 3000)}.00",
                currency=rng.choice(["CNY", "CNY", "USD"]),
                category=rng.choice([None, "shoes", "bags"]),
                province=rng.choice([None, "浙江省", "广东省"]),
            )
        )
    changed.append(make_order("new-customer", "c-new", days_ago=1, amount="20.00"))
    return changed


def published_changes(db, after: int) -> list[dict]:
    """The ``segment.changed`` events in the outbox after the first ``after``, without
    their event ids and times, by customer."""
    events = outbox_events(db)[after:]
    return sorted(
        (e.data.model_dump(mode="json", by_alias=True) for e in events),
        key=lambda data: data["customer_id"],
    )


@pytest.mark.parametrize("with_segments", [False, True])
def test_both_paths_publish_the_same_changes_for_the_same_orders(
    db_url: str, other_db_url: str, with_segments: bool
) -> None:
    """The same order changes applied by the per-event path (one poll batch) and by the
    full rescoring (written to the order states, then everyone re-aggregated and scored
    with the same cut points): the same customers change, with the same ``from``, ``to``
    and memberships, and the stored state ends the same."""
    _, final = history(seed=9, customers=60, rich=True)
    changes = later_versions(final, seed=10)
    cut_points, _ = batch_reference(final)
    consumer, batch = database(db_url), database(other_db_url)
    for db in (consumer, batch):
        with db.unit_of_work() as session:
            CutPointSets(session).add(
                CutPointSet(
                    policy_version=1, as_of=NOW, computed_at=utcnow(), body=cut_points.to_json()
                )
            )
            for segment_id, rule in SEGMENT_RULES.items() if with_segments else ():
                rule_model = scoring_context.RULE_ADAPTER.validate_python(rule)
                segment_admin.create_segment(session, segment_id, segment_id, None, rule_model)
        feed(db, [recorded(o) for o in final], chunk=1000)
    before = len(outbox_events(consumer))
    assert before == len(outbox_events(batch)) > 0

    feed(consumer, [recorded(o) for o in changes], chunk=len(changes))
    with batch.unit_of_work() as session:
        states = OrderStates(session)
        known = states.rows([o.order_id for o in changes])
        rows = [per_event.order_row(o, o.customer_id) for o in changes]
        states.update_many([r for r in rows if r["order_id"] in known])
        states.insert_many([r for r in rows if r["order_id"] not in known])
        outcome = rescoring.rescore_all(session, NOW, recompute=False, reaggregate=True)

    from_events = published_changes(consumer, before)
    from_batch = published_changes(batch, before)
    assert outcome.changed == len(from_batch)
    assert [e["customer_id"] for e in from_batch] == [e["customer_id"] for e in from_events]
    assert from_batch == from_events
    # the changes cover what only the figures show, and memberships when there are segments
    moved_figures_only = [
        e
        for e in from_events
        if e["from"] is not None
        and e["from"]["rfm_code"] == e["to"]["rfm_code"]
        and e["from"]["lifecycle_stage"] == e["to"]["lifecycle_stage"]
        and e["segments_entered"] == e["segments_left"] == []
    ]
    assert moved_figures_only
    assert any(e["from"] is None for e in from_events)  # the new customer
    if with_segments:
        assert any(e["segments_entered"] for e in from_events)
        assert any(e["segments_left"] for e in from_events)
    pd.testing.assert_frame_equal(stored_state(consumer, RICH), stored_state(batch, RICH))
    assert members(consumer) == members(batch)


def members(db) -> list[tuple[str, str]]:
    with db.unit_of_work() as session:
        rows = session.execute(
            text("SELECT segment_id, customer_id FROM segment_members ORDER BY 1, 2")
        ).all()
    return [tuple(row) for row in rows]


def test_replay_from_the_start_into_an_empty_database_is_identical(db_url: str, tmp_path) -> None:
    events, _ = history(seed=11, customers=60)
    inbound = [recorded(o) for o in events]
    first = database(db_url)
    feed(first, inbound, chunk=25)
    with first.unit_of_work() as session:
        rescoring.rescore_all(session, NOW)
    replay = database(f"sqlite:///{tmp_path / 'replay.db'}")
    feed(replay, inbound, chunk=1000)  # one big batch this time
    with replay.unit_of_work() as session:
        rescoring.rescore_all(session, NOW)
    pd.testing.assert_frame_equal(stored_state(first), stored_state(replay))


def test_repeated_and_stale_events_publish_nothing(sqlite_url: str) -> None:
    db = database(sqlite_url)
    paid = order("o1", "c1", days_ago=2, amount="80.00")
    feed(db, [recorded(paid)])
    assert len(outbox_events(db)) == 1
    created = order("o1", "c1", days_ago=2, amount="80.00", status="created")
    feed(db, [recorded(paid)])  # the same state again
    feed(db, [recorded(created)])  # an older version, late
    assert len(outbox_events(db)) == 1


def test_refunds_and_cancellations_move_f_and_m(sqlite_url: str) -> None:
    db = database(sqlite_url)
    feed(
        db,
        [
            recorded(order("o1", "c1", days_ago=2, amount="80.00")),
            recorded(order("o2", "c1", days_ago=3, amount="20.00")),
        ],
    )
    feed(
        db,
        [
            recorded(
                order("o2", "c1", days_ago=3, amount="20.00", status="cancelled", version_minutes=5)
            )
        ],
    )
    feed(
        db,
        [
            recorded(
                order(
                    "o1",
                    "c1",
                    days_ago=2,
                    amount="80.00",
                    status="partially_refunded",
                    refunded="30.00",
                    version_minutes=5,
                )
            )
        ],
    )
    changes = outbox_events(db)
    assert [(e.data.current.frequency, str(e.data.current.monetary)) for e in changes] == [
        (2, "100.00"),
        (1, "80.00"),
        (1, "50.00"),
    ]
    assert changes[1].data.previous.frequency == 2
    assert changes[0].data.previous is None
    assert all(e.data.policy_version == 1 for e in changes)


def test_merge_combines_orders_under_the_survivor(sqlite_url: str) -> None:
    db = database(sqlite_url)
    feed(
        db,
        [
            recorded(order("o1", "a", days_ago=2, amount="10.00")),
            recorded(order("o2", "b", days_ago=5, amount="20.00")),
        ],
    )
    feed(db, [merged("a", "b")])
    # an order for the merged id after the merge counts for the survivor
    feed(db, [recorded(order("o3", "b", days_ago=1, amount="5.00"))])
    state = stored_state(db).set_index("customer_id")
    assert list(state.index) == ["a"]
    assert state.loc["a", "frequency"] == 3
    assert state.loc["a", "monetary_e4"] == 350_000
    removed = [e for e in outbox_events(db) if e.data.removed]
    assert [e.data.customer_id for e in removed] == ["b"]


def test_erasure_removes_the_customer_everywhere(sqlite_url: str) -> None:
    db = database(sqlite_url)
    feed(db, [recorded(order("o1", "a", days_ago=2)), recorded(order("o2", "z", days_ago=2))])
    feed(db, [erased("a")])
    # a late redelivery of the erased customer's old order is ignored
    feed(db, [recorded(order("o1", "a", days_ago=2, version_minutes=9))])
    assert stored_state(db)["customer_id"].tolist() == ["z"]
    with db.unit_of_work() as session:
        left = session.execute(
            text("SELECT count(*) FROM order_states WHERE customer_id='a'")
        ).scalar()
    assert left == 0
    last = outbox_events(db)[-1]
    assert last.data.customer_id == "a" and last.data.removed and last.data.current is None
    # a new order placed after the erasure is a new relationship
    feed(db, [recorded(order("o9", "a", days_ago=-1))])
    assert "a" in stored_state(db)["customer_id"].tolist()


def test_erasing_a_merged_customer_keeps_none_of_its_ids(sqlite_url: str) -> None:
    db = database(sqlite_url)
    feed(db, [recorded(order("o1", "a", days_ago=2)), recorded(order("o2", "b", days_ago=3))])
    feed(db, [merged("a", "b"), recorded(order("o3", "z", days_ago=2))])
    # profile erases every id of the merged customer, each with its own event
    feed(db, [erased("a"), erased("b")])
    with db.unit_of_work() as session:
        rows = [
            tuple(row)
            for table in ("customer_aliases", "erased_customers", "order_states")
            for row in session.execute(text(f"SELECT * FROM {table}"))
        ]
    assert not [row for row in rows if "a" in row or "b" in row]
    # late versions of either id's old orders stay out
    feed(
        db,
        [
            recorded(order("o1", "a", days_ago=2, version_minutes=9)),
            recorded(order("o2", "b", days_ago=3, version_minutes=9)),
        ],
    )
    assert stored_state(db)["customer_id"].tolist() == ["z"]


def test_the_sweep_moves_customers_as_days_pass(db_url: str) -> None:
    db = database(db_url)
    feed(db, [recorded(order("o1", "a", days_ago=10)), recorded(order("o2", "b", days_ago=100))])
    with db.unit_of_work() as session:
        rescoring.rescore_all(session, NOW)
    before = len(outbox_events(db))
    later = NOW + timedelta(days=25)
    with db.unit_of_work() as session:
        outcome = rescoring.rescore_all(session, later)
    assert outcome.changed == 1
    moved = outbox_events(db)[before:]
    assert [
        (e.data.customer_id, e.data.previous.lifecycle_stage, e.data.current.lifecycle_stage)
        for e in moved
    ] == [("a", "new", "silent")]
    with db.unit_of_work() as session:
        assert rescoring.rescore_all(session, later).changed == 0


def test_orders_leaving_the_window_are_refreshed_by_the_sweep(sqlite_url: str) -> None:
    db = database(sqlite_url)
    feed(db, [recorded(order("o1", "a", days_ago=360)), recorded(order("o2", "a", days_ago=2))])
    with db.unit_of_work() as session:
        outcome = rescoring.rescore_all(session, NOW + timedelta(days=10))
    assert outcome.refreshed_windows == 1
    state = stored_state(db).set_index("customer_id")
    assert state.loc["a", "frequency"] == 1 and state.loc["a", "order_count"] == 2
    last = outbox_events(db)[-1]
    assert last.data.previous.frequency == 2 and last.data.current.frequency == 1


def test_a_window_refresh_that_moves_a_customer_into_a_segment_records_it_once(
    sqlite_url: str,
) -> None:
    db = database(sqlite_url)
    feed(db, [recorded(order("o1", "a", days_ago=360)), recorded(order("o2", "a", days_ago=2))])
    with db.unit_of_work() as session:
        segment_admin.create_segment(
            session, "low", "low", None, Condition(field="frequency", op="lte", value=1)
        )
    with db.unit_of_work() as session:
        outcome = rescoring.rescore_all(session, NOW + timedelta(days=10))
    assert outcome.refreshed_windows == 1
    with db.unit_of_work() as session:
        members = session.execute(text("SELECT customer_id FROM segment_members")).all()
    assert [m[0] for m in members] == ["a"]


@pytest.mark.parametrize("as_of_days", [0, 30])
def test_encoded_events_match_the_shared_model(sqlite_url: str, as_of_days: int) -> None:
    record = changes.segment_changed_record(
        "c1",
        3,
        NOW - timedelta(days=as_of_days),
        None,
        {"frequency": 1, "monetary": "1.00"},
        ["s1"],
        ["s0"],
    )
    event = decode_event(record[2])
    assert event.data.segments_entered == ["s1"] and event.data.segments_left == ["s0"]
    assert event.data.current.monetary == money.from_e4(10_000)


def test_offsets_are_stored_as_instants(db_url: str) -> None:
    db = database(db_url)
    shanghai = order("o1", "a", days_ago=0)
    local = datetime.fromisoformat("2026-11-19T23:30:00+08:00")  # 15:30 UTC
    shanghai = shanghai.model_copy(
        update={"created_at": local, "paid_at": local, "updated_at": local}
    )
    feed(db, [recorded(shanghai)])
    with db.unit_of_work() as session:
        view = reads.score_customers(session, ["a"], None, NOW)[0].row
    assert view["last_order_at"] == datetime(2026, 11, 19, 15, 30, tzinfo=UTC)
    # 04:00 UTC on the 20th is noon in Shanghai: the order was yesterday there
    assert view["recency_days"] == 1


def test_cut_points_are_stale_when_the_population_grows(sqlite_url: str) -> None:
    db = database(sqlite_url)
    with db.unit_of_work() as session:
        assert not rescoring.cut_points_stale(session, NOW)  # nobody yet
    feed(db, [recorded(order(f"o{i}", f"c{i}", days_ago=i)) for i in range(20)])
    with db.unit_of_work() as session:
        assert rescoring.cut_points_stale(session, NOW)
        rescoring.rescore_all(session, NOW)
    with db.unit_of_work() as session:
        assert not rescoring.cut_points_stale(session, NOW)
    feed(db, [recorded(order("o99", "c99", days_ago=1))])  # 5 % more: not yet
    with db.unit_of_work() as session:
        assert not rescoring.cut_points_stale(session, NOW)
