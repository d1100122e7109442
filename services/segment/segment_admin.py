"""Changing and deleting custom segments (use cases; flush, never commit).

A rule change or a deletion re-evaluates every customer at once with the batch path
(``rescoring.rescore_all`` without new cut points): customers who enter or leave get their
``segment.changed`` events. A deletion also publishes ``segment.deleted`` (keyed by the
segment id), by which campaign learns that campaigns aimed at it must not launch.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from services.segment import rescoring, scoring_context
from services.segment.context_repository import Segments
from services.segment.models import CustomSegment, DeletedSegmentId
from services.segment.rules import Rule
from services.segment.schemas import SegmentUpdate
from shared import topics
from shared.bus import add_to_outbox
from shared.errors import Conflict, NotFound
from shared.events import SegmentDeletedEvent, SegmentDeletedPayload, utcnow


def _get(session: Session, segment_id: str) -> CustomSegment:
    segment = Segments(session).get(segment_id)
    if segment is None:
        raise NotFound(f"no segment {segment_id}")
    return segment


def update_segment(
    session: Session, segment_id: str, change: SegmentUpdate, now: datetime
) -> CustomSegment:
    """Apply the fields sent; a new rule re-evaluates and publishes membership changes."""
    segment = _get(session, segment_id)
    sent = change.model_fields_set
    if change.name is not None:
        segment.name = change.name
    if "description" in sent:
        segment.description = change.description
    if change.rule is not None:
        segment.rule = scoring_context.RULE_ADAPTER.dump_python(
            change.rule, mode="json", by_alias=True
        )
        session.flush()
        rescoring.rescore_all(session, now, recompute=False)
        session.refresh(segment)
    session.flush()
    return segment


def delete_segment(session: Session, segment_id: str, now: datetime) -> SegmentDeletedPayload:
    """Delete a segment: its members leave it (their segment.changed events go out) and
    segment.deleted is published."""
    segment = _get(session, segment_id)
    deleted = SegmentDeletedPayload(segment_id=segment_id, name=segment.name, deleted_at=utcnow())
    session.delete(segment)
    if session.get(DeletedSegmentId, segment_id) is None:
        session.add(
            DeletedSegmentId(
                segment_id=segment_id, name=segment.name, deleted_at=deleted.deleted_at
            )
        )
    session.flush()
    rescoring.rescore_all(session, now, recompute=False)
    add_to_outbox(
        session,
        topics.SEGMENTS,
        SegmentDeletedEvent(source="segment", key=segment_id, data=deleted),
    )
    session.flush()
    return deleted


def refuse_a_deleted_id(session: Session, segment_id: str) -> None:
    """409 ``segment-id-deleted`` if a segment had this id and was deleted: campaigns
    aimed at it were told it is gone, and a new segment under the old id would quietly
    retarget whatever still names it."""
    deleted = session.get(DeletedSegmentId, segment_id)
    if deleted is not None:
        raise Conflict(
            f"segment {segment_id} ({deleted.name}) was deleted; a deleted id is not used "
            "again: choose another segment_id",
            slug="segment-id-deleted",
            segment_id=segment_id,
        )


def create_segment(
    session: Session, segment_id: str, name: str, description: str | None, rule: Rule
) -> CustomSegment:
    segment = CustomSegment(
        segment_id=segment_id,
        name=name,
        description=description,
        rule=scoring_context.RULE_ADAPTER.dump_python(rule, mode="json", by_alias=True),
        member_count=0,
        created_at=utcnow(),
    )
    Segments(session).add(segment)
    return segment
