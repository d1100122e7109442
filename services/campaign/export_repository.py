"""Queries for a subject-access export of campaign's data."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from services.campaign.models import AudienceMember, Campaign, Entry, Receipt

A = cast(Table, AudienceMember.__table__)
C = cast(Table, Campaign.__table__)
E = cast(Table, Entry.__table__)
R = cast(Table, Receipt.__table__)


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in result]


class SubjectRecords:
    def __init__(self, session: Session) -> None:
        self.session = session

    def audience(self, customer_ids: list[str]) -> list[dict[str, Any]]:
        return _rows(self.session.execute(select(A).where(A.c.customer_id.in_(customer_ids))))

    def entries(self, customer_ids: list[str]) -> list[dict[str, Any]]:
        return _rows(
            self.session.execute(
                select(
                    E.c.campaign_id,
                    C.c.name.label("campaign_name"),
                    E.c.customer_id,
                    E.c.entry_no,
                    E.c.run_no,
                    E.c.entered_at,
                    E.c.outcome,
                    E.c.reason,
                    E.c.channel,
                    E.c.message_id,
                    E.c.not_before,
                )
                .join(C, C.c.campaign_id == E.c.campaign_id, isouter=True)
                .where(E.c.customer_id.in_(customer_ids))
                .order_by(E.c.id)
            )
        )

    def receipts(self, customer_ids: list[str]) -> list[dict[str, Any]]:
        return _rows(
            self.session.execute(
                select(
                    R.c.message_id, R.c.campaign_id, R.c.customer_id, R.c.status, R.c.at, R.c.reason
                )
                .where(R.c.customer_id.in_(customer_ids))
                .order_by(R.c.at)
            )
        )
