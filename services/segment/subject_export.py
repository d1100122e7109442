"""Segment's part of a subject-access export: scores (with the stored predictive CLV) as
of now and custom-segment memberships. Segment keeps no history of past scores: each change was published as a
``segment.changed`` event (profile keeps the latest), not stored here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.segment import reads
from services.segment.export_repository import SubjectRecords
from services.segment.service import with_predictions
from shared.events import ensure_aware, utcnow


def export_section(session: Session, customer_ids: list[str]) -> dict[str, Any]:
    """``{scores: [...], segment_memberships: [...]}`` with the API's field names."""
    views = reads.score_customers(session, customer_ids, None, utcnow())
    # with the predictive CLV kept about the customer (p_alive, predicted CLV, ...)
    scores = [
        read.model_dump(mode="json")
        for view, read in zip(views, with_predictions(session, views, None), strict=True)
        if int(view.row.get("order_count") or 0) > 0
    ]
    memberships = SubjectRecords(session).memberships(customer_ids)
    for membership in memberships:
        membership["entered_at"] = ensure_aware(membership["entered_at"]).isoformat()
    return {"scores": scores, "segment_memberships": memberships}
