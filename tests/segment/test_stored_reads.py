"""The scores read without ``as_of`` serves the stored rows and answers exactly what the
recomputation from orders answers: across customers of every stage, policy changes, day
boundaries (before and after the sweep), orders leaving the window and new events.

Against a real database (SQLite and PostgreSQL), no broker. ``recomputed`` is the read as
it was before (``reads.score_customers`` at ``consistent_now``); ``served`` the read now.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from services.segment import (
    local_days,
    per_event,
    reads,
    rescoring,
    scoring_context,
    segment_admin,
)
from services.segment.policy import ScoringPolicy
from services.segment.repository import Customers
from services.segment.service import scores_read
from services.segment.sweep import DaySweep, consistent_now, day_start, mark_swept
from shared.db import Database
from tests.segment.helpers import NOW, database, merged, order, recorded


def seeded(db: Database, customers: int = 120, seed: int = 3) -> list[str]:
    """Buyers of 1-4 orders over 400 days (some refunded, some in USD), prospects, two rules."""
    rng = random.Random(seed)
    events = []
    for c in range(customers):
        for k in range(rng.choice([1, 1, 2, 3, 4])):
            events.append(
                recorded(
                    order(
                        f"o{c}-{k}",
                        f"c{c:04d}",
                        days_ago=rng.uniform(0, 400),
                        amount=f"{rng.randint(5, 900)}.{rng.randint(0, 99):02d}",
                        status=rng.choice(["paid", "paid", "paid", "created", "refunded"]),
                        currency=rng.choice(["CNY", "CNY", "CNY", "USD"]),
                        category=rng.choice(["shoes", "bags", None]),
                        channel=rng.choice(["tmall", "jd", None]),
                    )
                )
            )
    # leaves the 180-day window of the changed policy late on the last day swept below
    events.append(recorded(order("edge-0", "edge", days_ago=300)))
    events.append(recorded(order("edge-1", "edge", days_ago=138 + 14 / 24)))
    with db.unit_of_work() as session:
        for segment_id, rule in [
            ("lapsing", {"field": "recency_days", "op": "between", "value": [45, 60]}),
            ("shoes", {"field": "categories", "op": "contains", "value": "shoes"}),
        ]:
            parsed = scoring_context.RULE_ADAPTER.validate_python(rule)
            segment_admin.create_segment(session, segment_id, segment_id, None, parsed)
    for start in range(0, len(events), 50):
        with db.unit_of_work() as session:
            per_event.apply_messages(session, events[start : start + 50], NOW)
    with db.unit_of_work() as session:
        rescoring.rescore_all(session, NOW)
        mark_swept(session, NOW)
        session.execute(text("DELETE FROM outbox"))
    return [f"c{c:04d}" for c in range(customers)] + ["edge", "nobody"]


def _answers(views: list[reads.CustomerView]) -> list[dict[str, Any]]:
    return [scores_read(v).model_dump(mode="json") for v in views]


def compare(db: Database, ids: list[str], now: datetime) -> int:
    """Assert both reads answer the same for each customer (one at a time and as a page);
    returns how many the served read took from the stored rows."""
    with db.unit_of_work() as session:
        expected = reads.score_customers(session, ids, None, consistent_now(session, now))
        served = reads.current_scores(session, ids, now)
        assert _answers(served) == _answers(expected)
        for one in ids[::7]:
            assert _answers(reads.current_scores(session, [one], now)) == _answers(
                reads.score_customers(session, [one], None, consistent_now(session, now))
            )
    return stored_count(db, ids, now)


def stored_count(db: Database, ids: list[str], now: datetime) -> int:
    """How many customers the served read answers from their rows (without recomputing)."""
    with db.unit_of_work() as session:
        fallen: list[str] = []
        original = reads.score_customers

        def spy(session: Any, customer_ids: Any, *args: Any) -> Any:
            fallen.extend(customer_ids)
            return original(session, customer_ids, *args)

        reads.score_customers = spy  # type: ignore[assignment]
        try:
            found = reads.current_scores(session, ids, now)
        finally:
            reads.score_customers = original  # type: ignore[assignment]
    return len([v for v in found if v.row["customer_id"] not in fallen])


def test_stored_read_equals_recomputation_across_policies_days_and_events(db_url: str) -> None:
    db = database(db_url)
    ids = seeded(db)
    population = len(ids) - 1

    # scored and swept today: every customer from the stored rows
    assert compare(db, ids, NOW + timedelta(minutes=5)) == population

    # a policy change (fixed breakpoints, wider stages, a shorter window): rescored at once
    changed = ScoringPolicy.model_validate(
        {
            "window_days": 180,
            "recency": {"method": "fixed", "breakpoints": [14, 30, 60, 120]},
            "frequency": {"method": "fixed", "breakpoints": [1, 2, 3, 4]},
            "lifecycle": {"active_days": 60, "silent_days": 120, "sleeping_days": 240},
        }
    )
    moment = NOW + timedelta(hours=1)
    with db.unit_of_work() as session:
        _, window_changed = scoring_context.set_policy(session, changed, comment=None)
        rescoring.rescore_all(session, moment, reaggregate=window_changed)
    assert compare(db, ids, moment + timedelta(minutes=1)) == population

    # day boundaries: before the sweep (reads score at the end of the last day swept),
    # then swept; recency moves daily for everyone, stages for a few
    sweep = DaySweep(db, chunk_size=25)
    midnight = day_start(
        local_days.local_day_number(NOW, "Asia/Shanghai") + 1, ZoneInfo("Asia/Shanghai")
    )
    for days in (0, 1, 2, 9, 40):
        boundary = midnight + timedelta(days=days, seconds=20)
        compare(db, ids, boundary)  # the sweep has not run yet: recomputed, equal anyway
        sweep.run(boundary)
        assert compare(db, ids, boundary + timedelta(seconds=5)) == population

    # orders leave the window during the day (between sweeps): those customers recomputed
    later = midnight + timedelta(days=40, hours=23)
    with db.unit_of_work() as session:
        expiring = Customers(session).with_window_expiring(later - timedelta(days=180))
    assert "edge" in expiring
    served = compare(db, ids, later)
    assert served == population - len(expiring)

    # new events: the consumer's rows are read as stored
    event_time = later + timedelta(minutes=1)
    with db.unit_of_work() as session:
        per_event.apply_messages(
            session,
            [
                recorded(order("n1", "c0001", days_ago=-40.9, amount="12.00")),
                recorded(order("n2", "newcomer", days_ago=-40.9, amount="7.00")),
                recorded(order("n3", "prospect", days_ago=-40.9, status="created")),
            ],
            event_time,
        )
    compare(db, [*ids, "newcomer", "prospect"], event_time + timedelta(seconds=1))


def test_without_a_sweep_only_rows_scored_that_day_are_served(db_url: str) -> None:
    db = database(db_url)
    with db.unit_of_work() as session:
        per_event.apply_messages(
            session,
            [
                recorded(order("a1", "alice", days_ago=3, amount="80.00")),
                recorded(order("b1", "bob", days_ago=29.5, amount="20.00")),
                recorded(order("p1", "pat", days_ago=1, status="created")),
            ],
            NOW,
        )
    ids = ["alice", "bob", "pat"]
    assert compare(db, ids, NOW + timedelta(hours=2)) == 3
    # days later with no sweep recorded: the stored stages may be stale, so recomputed
    for days in (1, 30):
        assert compare(db, ids, NOW + timedelta(days=days)) == 0


def test_merged_and_unknown_customers_are_not_found_either_way(db_url: str) -> None:
    db = database(db_url)
    with db.unit_of_work() as session:
        per_event.apply_messages(
            session,
            [
                recorded(order("a1", "alice", days_ago=3)),
                recorded(order("a2", "alice-old", days_ago=9)),
                merged("alice", "alice-old"),
            ],
            NOW,
        )
    with db.unit_of_work() as session:
        for ids in (["ghost"], ["alice-old"]):
            assert reads.current_scores(session, ids, NOW) == []
            assert reads.score_customers(session, ids, None, NOW) == []
    assert compare(db, ["alice", "alice", "alice-old"], NOW) == 1
