"""``as_of`` in valid time: the scores as they were at T, from what was known at T.

For ``as_of=T`` every read (scores, reports, the CLV summary) uses:

- per order, the newest version whose ``updated_at`` is at or before T
  (``order_versions``; an order with no version by then does not exist yet, a refund or
  cancellation recorded after T does not count);
- the scoring policy version in force at T: the highest version created at or before T
  (before the first stored version: the first one);
- that version's cut points as they were at T: the newest set a batch computed at or
  before T; if none had been computed yet, recomputed from the versions known at T (a
  full rescoring of them);
- the custom segments defined now (their definitions are not versioned).

So ``as_of=T`` answers what a full rescoring at T of only the versions known at T with
the cut points in force at T gave, whenever it is asked
(``tests/segment/test_point_in_time.py`` checks it for random histories).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy.orm import Session

from services.segment import reads, scoring, scoring_context
from services.segment.context_repository import CutPointSets, Segments
from services.segment.cut_points import CutPoints, compute_cut_points
from services.segment.order_history import OrderVersions
from services.segment.policy import ScoringPolicy
from shared.events import ensure_aware


def policy_at(session: Session, as_of: datetime) -> tuple[int, ScoringPolicy]:
    """The policy version in force at ``as_of`` and its body."""
    history = scoring_context.policy_history(session)
    chosen = history[0]
    for version in history:
        created = version.created_at
        if created is None or ensure_aware(created) <= as_of:
            chosen = version
    return chosen.version, ScoringPolicy.model_validate(chosen.policy)


def cut_points_at(
    session: Session, version: int, policy: ScoringPolicy, as_of: datetime
) -> CutPoints:
    """The cut points in force at ``as_of`` (else recomputed from the versions known then)."""
    stored = CutPointSets(session).latest_at(version, as_of)
    if stored is not None:
        return CutPoints.from_json(stored.body)
    everyone = scoring.aggregate_orders(
        OrderVersions(session).frame_as_of(as_of), as_of, policy, cutoff=as_of
    )
    return compute_cut_points(everyone, policy, version, as_of)


def context_at(session: Session, as_of: datetime) -> scoring_context.ScoringContext:
    version, policy = policy_at(session, as_of)
    return scoring_context.ScoringContext(
        policy_version=version,
        policy=policy,
        cut_points=cut_points_at(session, version, policy, as_of),
        segments=[
            (s.segment_id, scoring_context.RULE_ADAPTER.validate_python(s.rule))
            for s in Segments(session).all()
        ],
    )


def scores_at(
    session: Session, as_of: datetime, customer_ids: Sequence[str] | None = None
) -> tuple[pd.DataFrame, list[list[str]], scoring_context.ScoringContext]:
    """Scores as of ``as_of`` (of these customers, or of everyone known then), their
    custom-segment memberships, and the context used."""
    context = context_at(session, as_of)
    orders = OrderVersions(session).frame_as_of(as_of, customer_ids)
    aggregates = scoring.aggregate_orders(orders, as_of, context.policy, cutoff=as_of)
    scores = scoring.score_aggregates(aggregates, context.policy, context.cut_points, as_of)
    return scores, scoring.memberships(scores, context.segments), context


def score_customers(
    session: Session, customer_ids: Sequence[str], as_of: datetime
) -> list[reads.CustomerView]:
    """``reads.score_customers`` in valid time: the views carry the policy version used."""
    scores, member_lists, context = scores_at(session, as_of, customer_ids)
    views = []
    for row, segments in zip(scoring.plain_rows(scores), member_lists, strict=True):
        row["segments"] = segments
        views.append(reads.CustomerView(row, context.policy_version, as_of))
    return views


def members_at(
    session: Session, segment_id: str, as_of: datetime
) -> tuple[list[str], scoring_context.ScoringContext]:
    """The members a custom segment had at ``as_of`` (its rule over the scores of then),
    ordered by customer id, and the context used."""
    scores, member_lists, context = scores_at(session, as_of)
    ids = scores["customer_id"].tolist()
    members = sorted(c for c, m in zip(ids, member_lists, strict=True) if segment_id in m)
    return members, context


def purchases_at(session: Session, customer_ids: Sequence[str], as_of: datetime) -> pd.DataFrame:
    """The orders of these customers as known at ``as_of`` (for the CLV summary)."""
    return OrderVersions(session).frame_as_of(as_of, customer_ids)
