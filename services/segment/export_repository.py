"""Queries for a subject-access export of segment's data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.segment.repository import MEMBERS, SEGMENTS


class SubjectRecords:
    def __init__(self, session: Session) -> None:
        self.session = session

    def memberships(self, customer_ids: list[str]) -> list[dict[str, Any]]:
        rows = self.session.execute(
            select(
                MEMBERS.c.customer_id, MEMBERS.c.segment_id, SEGMENTS.c.name, MEMBERS.c.entered_at
            )
            .join(SEGMENTS, SEGMENTS.c.segment_id == MEMBERS.c.segment_id, isouter=True)
            .where(MEMBERS.c.customer_id.in_(customer_ids))
            .order_by(MEMBERS.c.customer_id, MEMBERS.c.segment_id)
        )
        return [
            {"customer_id": c, "segment_id": s, "segment_name": n, "entered_at": at}
            for c, s, n, at in rows
        ]
