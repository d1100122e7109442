"""Every query about subject-access exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from services.profile.models import SubjectExport

X = cast(Table, SubjectExport.__table__)


class SubjectExports:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        *,
        export_id: str,
        profile_id: str,
        customer_ids: list[str],
        requested_at: datetime,
        requested_by: str,
        sections: dict[str, Any],
    ) -> None:
        self.session.execute(
            insert(X).values(
                export_id=export_id,
                profile_id=profile_id,
                customer_ids=orjson.dumps(customer_ids).decode(),
                requested_at=requested_at,
                requested_by=requested_by,
                sections=orjson.dumps(sections).decode(),
            )
        )

    def get(self, export_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        query = select(X).where(X.c.export_id == export_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).first()
        if row is None:
            return None
        found = dict(row._mapping)
        found["customer_ids"] = orjson.loads(found["customer_ids"])
        found["sections"] = orjson.loads(found["sections"])
        return found

    def save_sections(
        self, export_id: str, sections: dict[str, Any], completed_at: datetime | None
    ) -> None:
        self.session.execute(
            update(X)
            .where(X.c.export_id == export_id)
            .values(sections=orjson.dumps(sections).decode(), completed_at=completed_at)
        )

    def delete_of(self, profile_id: str) -> None:
        """Erasure: exports of the person go with the rest of their data."""
        self.session.execute(delete(X).where(X.c.profile_id == profile_id))
