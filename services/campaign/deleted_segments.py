"""Segments deleted in the segment service (``segment.deleted``): campaigns aimed at one are
told (scheduled ones go back to draft, recurring runs stop) and refuse to launch (409)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from services.campaign.models import Campaign, DeletedSegment
from shared.errors import Conflict
from shared.events import SegmentDeletedEvent, utcnow

D = cast(Table, DeletedSegment.__table__)


def record_deletions(session: Session, events: Sequence[SegmentDeletedEvent]) -> None:
    """Remember each deleted segment (a repeat is a no-op) and stop its campaigns."""
    for event in events:
        data = event.data
        if session.get(DeletedSegment, data.segment_id) is None:
            session.add(
                DeletedSegment(
                    segment_id=data.segment_id, name=data.name, deleted_at=data.deleted_at
                )
            )
        for campaign in _aimed_at(session, data.segment_id):
            if campaign.status == "scheduled":
                campaign.status = "draft"
            if campaign.status in ("draft", "running"):
                campaign.next_run_at = None
                campaign.updated_at = utcnow()
    session.flush()


def _aimed_at(session: Session, segment_id: str) -> list[Campaign]:
    # few campaigns exist at a time: filter the audience JSON in Python (portable)
    live = session.scalars(
        select(Campaign).where(Campaign.status.in_(("draft", "scheduled", "running")))
    )
    return [c for c in live if (c.audience or {}).get("segment_id") == segment_id]


def refuse_if_segment_deleted(session: Session, campaign: Campaign) -> None:
    """409 if the campaign is aimed at a deleted segment (launch, scheduling)."""
    refuse_a_deleted_segment(session, campaign.audience)


def refuse_a_deleted_segment(session: Session, audience: dict[str, object] | None) -> None:
    """409 ``segment-deleted`` if ``audience`` names a deleted segment (create, PATCH of the
    audience, scheduling, launch)."""
    segment_id = (audience or {}).get("segment_id")
    if segment_id is None:
        return
    deleted = session.execute(select(D.c.name).where(D.c.segment_id == segment_id)).first()
    if deleted is not None:
        raise Conflict(
            f"the campaign's segment {segment_id} ({deleted[0]}) was deleted; aim it at "
            "another audience (PATCH) first",
            slug="segment-deleted",
            segment_id=segment_id,
        )
