"""Read use cases: customers' scores now or as of a time, everyone's for the reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from services.segment import incremental, local_days, predictive, scoring
from services.segment.identity_repository import Identities
from services.segment.repository import Customers, OrderStates
from services.segment.scoring import memberships, plain_rows
from services.segment.scoring_context import ScoringContext, current_policy, load_context
from services.segment.sweep import read_time, swept_through


@dataclass
class CustomerView:
    row: dict[str, Any]
    policy_version: int
    as_of: datetime


def score_customers(
    session: Session, customer_ids: Sequence[str], as_of: datetime | None, now: datetime
) -> list[CustomerView]:
    """Exact scores of these customers as of any time, from their orders, under the current policy."""
    context = load_context(session, now)
    reference = as_of or now
    orders = OrderStates(session).frame_for(customer_ids)
    aggregates = scoring.aggregate_orders(orders, reference, context.policy, cutoff=as_of)
    scores = scoring.score_aggregates(aggregates, context.policy, context.cut_points, reference)
    member_lists = memberships(
        predictive.with_predictions(session, scores, context.segments), context.segments
    )
    views = []
    for row, segments in zip(plain_rows(scores), member_lists, strict=True):
        row["segments"] = segments
        views.append(CustomerView(row, context.policy_version, reference))
    return views


def current_scores(
    session: Session, customer_ids: Sequence[str], now: datetime
) -> list[CustomerView]:
    """These customers' scores now (``consistent_now``), read from their stored rows.

    The same answer as :func:`score_customers` from their orders, without aggregating and
    scoring them with pandas on every read (that capped ``GET /v1/customers/{id}/scores``
    at ~68 requests/s, ~15 ms each; issue 13). The per-event path, the rescorings and the
    day sweep keep each stored state equal to a scoring as of ``consistent_now`` (the
    sweep tests hold them to it, ``tests/segment/test_stored_reads.py`` holds this read to
    the recomputation); only the recency is counted to the read's day and the policy
    version is the one in force (a rescoring rewrites only the customers it changes).
    A row that cannot show it is scored from the orders as before: no published state
    yet, an order left the window since it was aggregated, written after the read's
    time, or not swept to the read's day; and everyone while a day boundary waits for
    the sweep (its next check, seconds), when rows of both days are stored.
    """
    version, policy, _ = current_policy(session)
    swept = swept_through(session)
    reference = read_time(now, swept, policy.timezone)
    wanted = list(dict.fromkeys(customer_ids))
    if reference != now:
        # a day boundary waits for the sweep (seconds): the stored rows are of two days
        return score_customers(session, wanted, None, reference)
    today = local_days.local_day_number(reference, policy.timezone)
    window_start = reference - timedelta(days=policy.window_days)
    stored = Customers(session).snapshots(wanted)
    views: list[CustomerView] = []
    others: list[str] = []
    for customer_id in wanted:
        row = stored.get(customer_id)
        if row is None or not _shows_state_at(
            row, reference, today, swept, policy.timezone, window_start
        ):
            others.append(customer_id)
            continue
        row = dict(row)
        # the stored recency is that of the day it was scored (``scoring.score_arrays``)
        last = row["last_order_at"]
        if row["order_count"] > 0:
            row["recency_days"] = (
                max(today - local_days.local_day_number(last, policy.timezone), 0) if last else 0
            )
        else:
            row["recency_days"] = None
        views.append(CustomerView(row, version, reference))
    if others:
        views.extend(score_customers(session, others, None, reference))
        views.sort(key=lambda view: view.row["customer_id"])
    return views


def _shows_state_at(
    row: dict[str, Any],
    reference: datetime,
    today: int,
    swept: int | None,
    timezone: str,
    window_start: datetime,
) -> bool:
    """Whether a stored row holds the customer's state as of ``reference`` (local day ``today``)."""
    if row["state_hash"] is None or not incremental.still_current(row, reference, window_start):
        return False
    scored_at = row["scored_at"]
    if scored_at is None or scored_at > reference:
        return False
    # the sweep brings everyone to its last day; without one, only a row scored today is sure
    return (
        today == swept
        if swept is not None
        else local_days.local_day_number(scored_at, timezone) == today
    )


def survivor_of(session: Session, customer_id: str) -> str | None:
    return Identities(session).survivors([customer_id]).get(customer_id)


def all_scores(
    session: Session, as_of: datetime | None, now: datetime
) -> tuple[pd.DataFrame, ScoringContext]:
    """Everyone's scores (for reports): from stored aggregates now, or from orders as of a time."""
    context = load_context(session, now)
    reference = as_of or now
    if as_of is None:
        aggregates = Customers(session).aggregates_frame()
    else:
        aggregates = scoring.aggregate_orders(
            OrderStates(session).frame_all(), reference, context.policy, cutoff=as_of
        )
    return scoring.score_aggregates(
        aggregates, context.policy, context.cut_points, reference
    ), context
