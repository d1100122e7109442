"""The day-boundary sweep: customers whom the date alone moves are rescored at midnight.

A customer's stage, R score, named segment and recency-based custom segments change
with the calendar only when their recency (days since the last valid purchase, in the
policy's timezone) crosses one of a few values: the R cut points, the lifecycle
thresholds, the ``recency_days`` values of custom-segment rules; ``new`` ends when the
days since the first purchase cross ``active_days``; F and M move when an order leaves
the window. So the customers a boundary moves are those whose last purchase fell
exactly that many days before it, found with a range scan of the indexes on
``first_order_at`` / ``last_order_at`` (and ``window_oldest_at``): the work per boundary
is proportional to the customers whose state changes, not to everyone.

They are rescored through the batch path restricted to them (``rescoring.rescore_all``
with ``customer_ids``: their stored aggregates, re-aggregated where an order left the
window, scored with the cut points in force), which publishes ``segment.changed`` only
for a real change, so profile and campaign follow.
The last local day swept is kept in ``kv_state`` (``segment.swept_through_day``): a
restart after a missed boundary catches up over every day since at once. A full
rescoring scores everyone as of its time and marks that day swept.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from services.segment import rescoring, scoring_context
from services.segment.cut_points import CutPoints
from services.segment.local_days import local_day_number
from services.segment.policy import ScoringPolicy
from services.segment.repository import Customers
from services.segment.rules import AllOf, AnyOf, Condition, NotRule
from shared.db import Database, get_state, set_state

STATE_KEY = "segment.swept_through_day"
log = logging.getLogger(__name__)

_EPOCH = date(1970, 1, 1)


@dataclass
class SweepOutcome:
    """One run of the sweep: the local days covered (after, through], whom it rescored."""

    swept_after: date | None
    swept_through: date
    customers: int
    events: int
    seconds: float


def _rule_recencies(rule: object) -> set[int]:
    """Recency values at which a rule on ``recency_days`` may flip (v and v + 1 cover every op)."""
    if isinstance(rule, AllOf):
        return set().union(*(_rule_recencies(r) for r in rule.all))
    if isinstance(rule, AnyOf):
        return set().union(*(_rule_recencies(r) for r in rule.any))
    if isinstance(rule, NotRule):
        return _rule_recencies(rule.not_)
    if isinstance(rule, Condition) and rule.field == "recency_days":
        values = rule.value if isinstance(rule.value, list) else [rule.value]
        found: set[int] = set()
        for value in values:
            if isinstance(value, int | float) and math.isfinite(value):
                found.update({math.ceil(value), math.floor(value) + 1})
        return found
    return set()


def crossing_recencies(
    policy: ScoringPolicy, cut_points: CutPoints, rules: Iterable[object] = ()
) -> list[int]:
    """The recencies (days) at which a customer's state may change with the date alone.

    R scores ``5 - (cut points below the recency)``: a cut point c is passed at
    ``floor(c) + 1``; a stage threshold t (recency <= t) at ``t + 1``.
    """
    lifecycle = policy.lifecycle
    values = {math.floor(c) + 1 for c in cut_points.recency}
    values |= {lifecycle.active_days + 1, lifecycle.silent_days + 1, lifecycle.sleeping_days + 1}
    for rule in rules:
        values |= _rule_recencies(rule)
    return sorted(v for v in values if v > 0)


def day_start(day: int, zone: ZoneInfo) -> datetime:
    """The instant local day ``day`` (days since 1970-01-01 in ``zone``) begins."""
    local = datetime.combine(_EPOCH + timedelta(days=day), datetime.min.time(), tzinfo=zone)
    return local.astimezone(ZoneInfo("UTC"))


def _ranges(
    offsets: Iterable[int], after: int, through: int, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """[start, end) instants of the purchase days that reach an offset on a day in (after, through]."""
    spans: list[tuple[int, int]] = []
    for first, last in sorted((after + 1 - o, through - o) for o in set(offsets)):
        if spans and first <= spans[-1][1] + 1:  # a long catch-up: overlapping days
            spans[-1] = (spans[-1][0], max(spans[-1][1], last))
        else:
            spans.append((first, last))
    return [(day_start(a, zone), day_start(b + 1, zone)) for a, b in spans]


def due_customers(
    session: Session,
    context: scoring_context.ScoringContext,
    after: int,
    through: int,
    now: datetime,
) -> set[str]:
    """Customers whose state may change on a local day in (after, through], or whose window aged."""
    policy = context.policy
    zone = ZoneInfo(policy.timezone)
    customers = Customers(session)
    due = set(customers.with_window_expiring(now - timedelta(days=policy.window_days)))
    if through <= after:
        return due
    rules = [rule for _, rule in context.segments]
    recencies = crossing_recencies(policy, context.cut_points, rules)
    due |= customers.with_purchase_in("last_order_at", _ranges(recencies, after, through, zone))
    new_ends = [policy.lifecycle.active_days + 1]
    due |= customers.with_purchase_in("first_order_at", _ranges(new_ends, after, through, zone))
    return due


def _day(value: str | None) -> int | None:
    return None if value is None else (date.fromisoformat(value) - _EPOCH).days


def swept_through(session: Session) -> int | None:
    """The last local day swept (days since 1970-01-01), None before the first sweep."""
    return _day(get_state(session, STATE_KEY))


def consistent_now(session: Session, now: datetime) -> datetime:
    """The time a read without ``as_of`` scores at: ``now``, except while a day boundary
    waits for the sweep's next check (seconds): then the end of the last day swept, so
    the read shows the stages the stored state and the published events show."""
    swept = swept_through(session)
    if swept is None:
        return now
    _, policy, _ = scoring_context.current_policy(session)
    return read_time(now, swept, policy.timezone)


def read_time(now: datetime, swept: int | None, timezone: str) -> datetime:
    """``consistent_now`` given the last day swept and the policy's timezone."""
    if swept is None or local_day_number(now, timezone) <= swept:
        return now
    return day_start(swept + 1, ZoneInfo(timezone)) - timedelta(microseconds=1)


def mark_swept(session: Session, now: datetime) -> None:
    """Record that everyone is scored as of ``now`` (a full rescoring): its day is swept."""
    _, policy, _ = scoring_context.current_policy(session)
    today = local_day_number(now, policy.timezone)
    set_state(session, STATE_KEY, (_EPOCH + timedelta(days=today)).isoformat())


def rescore_customers(session: Session, customer_ids: Sequence[str], now: datetime) -> int:
    """Score these customers as of ``now`` with the cut points in force (the batch path,
    restricted to them; it holds off the consumer); returns the changes published."""
    return rescoring.rescore_all(session, now, recompute=False, customer_ids=customer_ids).changed


class DaySweep:
    """Runs the sweep on a database: due customers in chunks, one transaction each."""

    def __init__(self, db: Database, chunk_size: int = 2000) -> None:
        self.db = db
        self.chunk_size = chunk_size

    def run(self, now: datetime) -> SweepOutcome:
        started = time.perf_counter()
        with self.db.unit_of_work() as session:
            context = scoring_context.load_context(session, now)
            today = local_day_number(now, context.policy.timezone)
            after = _day(get_state(session, STATE_KEY))
            if after is None:
                # first run: the start-up rescoring (or the consumer) scored everyone today
                set_state(session, STATE_KEY, (_EPOCH + timedelta(days=today)).isoformat())
            due = sorted(due_customers(session, context, after or today, today, now))
        events = 0
        for start in range(0, len(due), self.chunk_size):
            with self.db.unit_of_work() as session:
                events += rescore_customers(session, due[start : start + self.chunk_size], now)
        if after is not None and today > after:
            with self.db.unit_of_work() as session:
                set_state(session, STATE_KEY, (_EPOCH + timedelta(days=today)).isoformat())
        return SweepOutcome(
            swept_after=None if after is None else _EPOCH + timedelta(days=after),
            swept_through=_EPOCH + timedelta(days=today),
            customers=len(due),
            events=events,
            seconds=round(time.perf_counter() - started, 3),
        )
