"""Read use cases: customers' scores now or as of a time, everyone's for the reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from services.segment import predictive, scoring
from services.segment.repository import Customers, Identities, OrderStates
from services.segment.scoring import memberships, plain_rows
from services.segment.scoring_context import ScoringContext, load_context


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
