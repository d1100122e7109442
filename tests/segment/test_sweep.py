"""The day-boundary sweep moves exactly whom the date moves, and catches up after a gap.

Against a real database (SQLite and PostgreSQL), no broker: after each sweep the stored
state equals a full scoring of every customer's orders at that time with the same cut
points, the sweep rescored only a small part of the population, and its events name
exactly the customers whose state changed.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pandas as pd
from sqlalchemy import text

from services.segment import (
    local_days,
    per_event,
    published_state,
    reads,
    rescoring,
    scoring,
    scoring_context,
)
from services.segment.changes import SNAPSHOT_WRITE_COLUMNS
from services.segment.context_repository import Segments
from services.segment.cut_points import CutPoints
from services.segment.models import CustomSegment
from services.segment.policy import DEFAULT_POLICY
from services.segment.repository import Customers, OrderStates
from services.segment.sweep import (
    STATE_KEY,
    DaySweep,
    consistent_now,
    crossing_recencies,
    day_start,
    mark_swept,
)
from shared.db import get_state
from shared.events import decode_event, utcnow
from tests.segment.helpers import NOW, database, order, recorded

STATE = [
    "customer_id",
    *(c for c in published_state.STATE_COLUMNS if c != "segments_key"),
    "segments",
    "frequency",
    "monetary_e4",
]


def seeded(db, customers: int = 300, seed: int = 11) -> None:
    """Customers with 1-3 paid orders spread over 400 days, scored and swept at NOW."""
    rng = random.Random(seed)
    events = []
    for c in range(customers):
        for k in range(rng.choice([1, 1, 2, 3])):
            days = rng.uniform(0, 400)
            events.append(recorded(order(f"o{c}-{k}", f"c{c:04d}", days_ago=days)))
    with db.unit_of_work() as session:
        session.add(
            CustomSegment(
                segment_id="lapsing",
                name="lapsing",
                description=None,
                rule={"field": "recency_days", "op": "between", "value": [45, 60]},
                member_count=0,
                created_at=utcnow(),
            )
        )
    for start in range(0, len(events), 100):
        with db.unit_of_work() as session:
            per_event.apply_messages(session, events[start : start + 100], NOW)
    with db.unit_of_work() as session:
        rescoring.rescore_all(session, NOW)
        mark_swept(session, NOW)
        session.execute(text("DELETE FROM outbox"))


def stored(db) -> pd.DataFrame:
    with db.unit_of_work() as session:
        frame = Customers(session).aggregates_frame(extra=SNAPSHOT_WRITE_COLUMNS)
    return _normal(frame)


def _normal(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[STATE].sort_values("customer_id").reset_index(drop=True).astype(object)
    frame["segments"] = frame["segments"].map(lambda s: sorted(s or []))
    return frame.where(frame.notna(), None).map(lambda v: int(v) if isinstance(v, float) else v)


def full_scoring(db, now) -> pd.DataFrame:
    """Every customer scored from their orders at ``now`` with the stored cut points."""
    with db.unit_of_work() as session:
        context = scoring_context.load_context(session, now)
        aggregates = scoring.aggregate_orders(OrderStates(session).frame_all(), now, context.policy)
        scores = scoring.score_aggregates(aggregates, context.policy, context.cut_points, now)
        scores["segments"] = scoring.memberships(scores, context.segments)
    return _normal(scores)


def published(db) -> list:
    with db.unit_of_work() as session:
        rows = session.execute(text("SELECT value FROM outbox ORDER BY id")).scalars().all()
        session.execute(text("DELETE FROM outbox"))
    return [decode_event(bytes(v)) for v in rows]


def changed_customers(before: pd.DataFrame, after: pd.DataFrame) -> set[str]:
    merged = before.merge(after, on="customer_id", suffixes=("_b", "_a"))
    columns = [c for c in STATE if c != "customer_id"]
    differs = pd.Series(False, index=merged.index)
    for c in columns:
        differs |= merged[f"{c}_b"].astype(str) != merged[f"{c}_a"].astype(str)
    return set(merged.loc[differs, "customer_id"])


def test_each_boundary_moves_exactly_whom_the_date_moves(db_url: str) -> None:
    db = database(db_url)
    seeded(db)
    population = len(stored(db))
    sweep = DaySweep(db, chunk_size=7)
    zone_midnight = day_start(local_days.local_day_number(NOW, "Asia/Shanghai") + 1, _zone())
    total_changed = 0
    for day in range(0, 40):
        before = stored(db)
        moment = zone_midnight + timedelta(days=day, seconds=30)
        outcome = sweep.run(moment)
        after = stored(db)
        pd.testing.assert_frame_equal(after, full_scoring(db, moment))
        changed = changed_customers(before, after)
        assert {e.key for e in published(db)} == changed
        assert outcome.customers >= len(changed)
        # proportional: a day's boundary touches a small share of the population
        assert outcome.customers < population * 0.1, (day, outcome.customers)
        total_changed += len(changed)
    assert total_changed > 20  # the days did move people (stages, R, the custom segment)


def test_a_sweep_within_the_same_day_does_nothing_and_a_restart_catches_up(db_url: str) -> None:
    db = database(db_url)
    seeded(db, customers=200, seed=5)
    sweep = DaySweep(db)
    again = sweep.run(NOW + timedelta(minutes=5))
    assert again.events == 0 and published(db) == []
    # the service was down for 45 days: one run covers every boundary missed
    later = NOW + timedelta(days=45, hours=3)
    outcome = sweep.run(later)
    assert outcome.swept_after is not None
    assert (outcome.swept_through - outcome.swept_after).days == 45
    pd.testing.assert_frame_equal(stored(db), full_scoring(db, later))
    with db.unit_of_work() as session:
        assert get_state(session, STATE_KEY) == outcome.swept_through.isoformat()
        members = Segments(session).members_page("lapsing", None, 1000)
    expected = full_scoring(db, later)
    assert sorted(members) == sorted(
        expected.loc[expected["segments"].map(lambda s: "lapsing" in s), "customer_id"]
    )
    assert sweep.run(later + timedelta(seconds=20)).customers == 0


def test_crossing_recencies_cover_cut_points_stages_and_rule_values() -> None:
    cut_points = CutPoints(
        policy_version=1,
        as_of=NOW,
        population=10,
        recency=(10.0, 20.5, 60.0, 120.0),
        frequency=(),
        monetary=(),
        quadrant_frequency=None,
        quadrant_monetary=None,
    )
    rule = scoring_context.RULE_ADAPTER.validate_python(
        {"not": {"field": "recency_days", "op": "between", "value": [45, 60]}}
    )
    assert crossing_recencies(DEFAULT_POLICY, cut_points, [rule]) == [
        11,
        21,
        31,
        45,
        46,
        60,
        61,
        91,
        121,
        181,
    ]


def _zone():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


def test_a_read_before_the_sweeps_next_check_shows_the_stored_stages(db_url: str) -> None:
    db = database(db_url)
    seeded(db, customers=200, seed=7)
    midnight = day_start(local_days.local_day_number(NOW, "Asia/Shanghai") + 1, _zone())
    just_after = midnight + timedelta(seconds=5)
    DaySweep(db).run(midnight - timedelta(seconds=10))  # the last check of the day (windows)
    with db.unit_of_work() as session:
        reference = consistent_now(session, just_after)
        assert reference == midnight - timedelta(microseconds=1)
        views = reads.score_customers(session, list(stored(db)["customer_id"]), None, reference)
    read = _normal(pd.DataFrame([v.row for v in views]))
    pd.testing.assert_frame_equal(read, stored(db))  # what the events said, not the new day
    assert DaySweep(db).run(just_after).events > 0  # the boundary did move customers
    with db.unit_of_work() as session:
        assert consistent_now(session, just_after) == just_after
        views = reads.score_customers(session, list(stored(db)["customer_id"]), None, just_after)
    read = _normal(pd.DataFrame([v.row for v in views]))
    pd.testing.assert_frame_equal(read, stored(db))
