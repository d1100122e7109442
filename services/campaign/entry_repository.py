"""Queries over a campaign's entries for reading them back (the list and the CSV)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from services.campaign.models import Entry

E = cast(Table, Entry.__table__)

ENTRY_FIELDS = (
    "customer_id",
    "entry_no",
    "run_no",
    "entered_at",
    "outcome",
    "reason",
    "channel",
    "message_id",
    "counted",
)


class EntryReader:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(
        self,
        campaign_id: str,
        *,
        outcome: str | None,
        reason: str | None,
        after_id: int | None,
        limit: int,
    ) -> list[tuple[int, dict[str, Any]]]:
        """Entries of a campaign in the order they were written: ``(id, fields)``."""
        query = (
            select(E.c.id, *(E.c[name] for name in ENTRY_FIELDS))
            .where(E.c.campaign_id == campaign_id)
            .order_by(E.c.id)
            .limit(limit)
        )
        if outcome is not None:
            query = query.where(E.c.outcome == outcome)
        if reason is not None:
            query = query.where(E.c.reason == reason)
        if after_id is not None:
            query = query.where(E.c.id > after_id)
        return [
            (row[0], dict(zip(ENTRY_FIELDS, row[1:], strict=True)))
            for row in self.session.execute(query)
        ]
