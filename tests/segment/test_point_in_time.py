"""as_of is valid time: for random histories of payments, refunds and cancellations,
``as_of=T`` equals a full rescoring of only the order versions known at T, whenever asked.

Against a real database (SQLite and PostgreSQL), no broker. Every version is fed (shuffled,
some twice) after all of them happened, so the current state holds only the final ones.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from services.segment import per_event, point_in_time, rescoring, scoring
from services.segment.context_repository import Policies, Segments
from services.segment.models import CustomSegment, ScoringPolicyVersion
from services.segment.policy import DEFAULT_POLICY
from services.segment.repository import ORDER_FRAME_COLUMNS
from shared.events import Order
from tests.segment.helpers import database, recorded

BASE = datetime(2026, 9, 1, 4, 0, tzinfo=UTC)
NOW = BASE + timedelta(days=120)
COMPARED = [
    "customer_id",
    "order_count",
    "total_spent_e4",
    "frequency",
    "monetary_e4",
    *scoring.SCORE_COLUMNS,
]
TABLES = (
    "order_versions",
    "order_states",
    "customer_scores",
    "cut_points",
    "scoring_policies",
    "segment_members",
    "outbox",
)

PATHS = {
    "unpaid": ["created"],
    "paid": ["created", "paid"],
    "completed": ["created", "paid", "completed"],
    "refunded": ["created", "paid", "refunded"],
    "partial": ["created", "paid", "partially_refunded"],
    "cancelled": ["created", "cancelled"],
    "paid_then_cancelled": ["created", "paid", "cancelled"],
}

order_spec = st.tuples(
    st.integers(0, 4),  # customer
    st.floats(0, 70 * 24, allow_nan=False),  # created, hours after BASE
    st.integers(1, 900),  # amount
    st.sampled_from(sorted(PATHS)),
    st.lists(st.floats(0.5, 15 * 24, allow_nan=False), min_size=3, max_size=3),  # gaps (h)
)


def versions_of(index: int, spec: tuple) -> list[Order]:
    customer, created_h, amount, path, gaps = spec
    created = BASE + timedelta(hours=created_h)
    at, paid_at, out = created, None, []
    for step, status in enumerate(PATHS[path]):
        if step:
            at = at + timedelta(hours=gaps[step - 1])
        if status == "paid":
            paid_at = at
        refunded = {"refunded": amount, "partially_refunded": amount // 3}.get(status, 0)
        out.append(
            Order(
                order_id=f"o{index}",
                customer_id=f"c{customer}",
                status=status,  # type: ignore[arg-type]
                created_at=created,
                paid_at=paid_at,
                updated_at=at,
                currency="CNY",
                total_amount=Decimal(amount),
                refunded_amount=Decimal(refunded),
                shipping={"province": "浙江省", "city": "杭州市"},
            )
        )
    return out


def known_at(versions: list[Order], as_of: datetime) -> pd.DataFrame:
    """Per order, the newest version at or before ``as_of``: the frame scoring reads."""
    newest: dict[str, Order] = {}
    for v in versions:
        if v.version_at <= as_of and (
            v.order_id not in newest or v.version_key() > newest[v.order_id].version_key()
        ):
            newest[v.order_id] = v
    rows = [per_event.order_row(o, o.customer_id) for o in newest.values()]
    frame = pd.DataFrame(rows, columns=[*ORDER_FRAME_COLUMNS])
    frame["categories"] = frame["categories"].map(tuple)
    for name in ("purchased_at", "created_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[COMPARED].sort_values("customer_id").reset_index(drop=True).astype(object)
    return frame.where(frame.notna(), None).map(lambda v: int(v) if isinstance(v, float) else v)


def reset(db) -> None:
    with db.unit_of_work() as session:
        for table in TABLES:
            session.execute(text(f"DELETE FROM {table}"))


def feed(db, versions: list[Order], seed: int, now: datetime = NOW) -> None:
    events = [recorded(v) for v in versions]
    random.Random(seed).shuffle(events)
    events += events[: len(events) // 3]  # some delivered twice
    for start in range(0, len(events), 7):
        with db.unit_of_work() as session:
            per_event.apply_messages(session, events[start : start + 7], now)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(order_spec, min_size=1, max_size=10),
    as_of_hours=st.floats(0, 100 * 24, allow_nan=False),
    seed=st.integers(0, 1000),
)
def test_as_of_equals_a_full_rescoring_of_the_versions_known_then(
    db_url: str, specs: list, as_of_hours: float, seed: int
) -> None:
    db = _db(db_url)
    reset(db)
    versions = [v for i, spec in enumerate(specs) for v in versions_of(i, spec)]
    feed(db, versions, seed)
    with db.unit_of_work() as session:
        rescoring.rescore_all(session, NOW)  # cut points of NOW: not in force at T < NOW
    as_of = BASE + timedelta(hours=as_of_hours)
    frame = known_at(versions, as_of)
    aggregates = scoring.aggregate_orders(frame, as_of, DEFAULT_POLICY, cutoff=as_of)
    _, expected = scoring.rescore(aggregates, DEFAULT_POLICY, 1, as_of)
    with db.unit_of_work() as session:
        scores, _, context = point_in_time.scores_at(session, as_of)
        ids = sorted(expected["customer_id"])[:2]
        views = point_in_time.score_customers(session, ids, as_of)
    assert context.policy_version == 1
    pd.testing.assert_frame_equal(normalise(scores), normalise(expected))
    one_by_one = pd.DataFrame([v.row for v in views], columns=scores.columns)
    pd.testing.assert_frame_equal(
        normalise(one_by_one),
        normalise(expected[expected["customer_id"].isin(ids)]),
    )


_DATABASES: dict[str, object] = {}


def _db(url: str):
    """One migrated database per backend for all examples (each example empties it)."""
    if url not in _DATABASES:
        _DATABASES[url] = database(url)
    return _DATABASES[url]


def test_the_cut_points_and_policy_in_force_at_t_are_used(db_url: str) -> None:
    db = database(db_url)
    rng = random.Random(9)
    specs = [
        (rng.randint(0, 4), rng.uniform(0, 40 * 24), rng.randint(1, 900), path, [5.0, 50.0, 90.0])
        for path in sorted(PATHS) * 3
    ]
    versions = [v for i, spec in enumerate(specs) for v in versions_of(i, spec)]
    t0 = BASE + timedelta(days=30)
    # the batch ran at t0 with what was known then; the rest arrived later
    feed(db, [v for v in versions if v.version_at <= t0], seed=1, now=t0)
    with db.unit_of_work() as session:
        at_t0 = rescoring.rescore_all(session, t0)
    feed(db, versions, seed=2)
    changed = DEFAULT_POLICY.model_copy(
        update={"lifecycle": DEFAULT_POLICY.lifecycle.model_copy(update={"active_days": 10})}
    )
    policy_changed_at = BASE + timedelta(days=50)
    with db.unit_of_work() as session:
        # version 1 is stored by the migration (at this database's first start): here the
        # deployment started 400 days before
        first = session.get(ScoringPolicyVersion, 1)
        assert first is not None and first.policy == DEFAULT_POLICY.model_dump(mode="json")
        first.created_at = BASE - timedelta(days=400)
        Policies(session).add(
            ScoringPolicyVersion(
                version=2,
                policy=changed.model_dump(mode="json"),
                created_at=policy_changed_at,
                comment="shorter active",
            )
        )
    t1 = BASE + timedelta(days=45)  # after t0's batch, before the policy change
    with db.unit_of_work() as session:
        scores, _, context = point_in_time.scores_at(session, t1)
    assert context.policy_version == 1
    assert context.cut_points.to_json() == at_t0.cut_points  # as they were at t1
    frame = known_at(versions, t1)
    aggregates = scoring.aggregate_orders(frame, t1, DEFAULT_POLICY, cutoff=t1)
    expected = scoring.score_aggregates(aggregates, DEFAULT_POLICY, context.cut_points, t1)
    pd.testing.assert_frame_equal(normalise(scores), normalise(expected))

    t2 = BASE + timedelta(days=60)  # the new policy is in force, no batch ran under it
    with db.unit_of_work() as session:
        scores, _, context = point_in_time.scores_at(session, t2)
    assert context.policy_version == 2
    frame = known_at(versions, t2)
    aggregates = scoring.aggregate_orders(frame, t2, changed, cutoff=t2)
    _, expected = scoring.rescore(aggregates, changed, 2, t2)
    pd.testing.assert_frame_equal(normalise(scores), normalise(expected))


def test_a_segments_members_then_count_a_payment_refunded_later(db_url: str) -> None:
    db = database(db_url)
    with db.unit_of_work() as session:
        session.add(
            CustomSegment(
                segment_id="big",
                name="big spenders",
                description=None,
                rule={"field": "monetary", "op": "gte", "value": "400"},
                member_count=0,
                created_at=BASE,
            )
        )
    # c0 paid 500 on day 1 and was refunded in full on day 4; c1 paid 450 on day 2
    refunded = versions_of(0, (0, 24.0, 500, "refunded", [1.0, 72.0, 1.0]))
    kept = versions_of(1, (1, 48.0, 450, "paid", [1.0, 1.0, 1.0]))
    feed(db, refunded + kept, seed=3)
    with db.unit_of_work() as session:
        day3, context = point_in_time.members_at(session, "big", BASE + timedelta(days=3))
        day5, _ = point_in_time.members_at(session, "big", BASE + timedelta(days=5))
        day1, _ = point_in_time.members_at(session, "big", BASE + timedelta(days=1, hours=12))
        now = Segments(session).members_page("big", None, 10)
    assert day1 == ["c0"] and day3 == ["c0", "c1"] and day5 == ["c1"] and now == ["c1"]
    assert context.policy_version == 1
