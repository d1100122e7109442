"""Every query about managed API keys (profile owns them)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from services.profile.models import ApiKeyRow
from shared.apikeys import ApiKeyState

K = cast(Table, ApiKeyRow.__table__)


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, state: ApiKeyState) -> None:
        self.session.execute(
            insert(K).values(
                key_id=state.key_id,
                name=state.name,
                record=state.model_dump_json(),
                created_at=state.created_at,
            )
        )

    def save(self, state: ApiKeyState) -> None:
        self.session.execute(
            update(K)
            .where(K.c.key_id == state.key_id)
            .values(name=state.name, record=state.model_dump_json())
        )

    def get(self, key_id: str, *, for_update: bool = False) -> ApiKeyState | None:
        query = select(K.c.record).where(K.c.key_id == key_id)
        if for_update:
            query = query.with_for_update()
        raw = self.session.execute(query).scalar_one_or_none()
        return None if raw is None else ApiKeyState.model_validate_json(raw)

    def last_used(self, key_ids: list[str]) -> dict[str, datetime | None]:
        rows = self.session.execute(
            select(K.c.key_id, K.c.last_used_at).where(K.c.key_id.in_(key_ids))
        ).all()
        return {key_id: at for key_id, at in rows}

    def page(self, after: str | None, limit: int) -> list[ApiKeyState]:
        query = select(K.c.record).order_by(K.c.key_id).limit(limit)
        if after is not None:
            query = query.where(K.c.key_id > after)
        return [ApiKeyState.model_validate_json(raw) for raw in self.session.scalars(query)]

    def note_used(self, key_id: str, at: datetime) -> None:
        """Move ``last_used_at`` forward to ``at`` (a late or repeated report is a no-op)."""
        self.session.execute(
            update(K)
            .where(K.c.key_id == key_id)
            .where((K.c.last_used_at.is_(None)) | (K.c.last_used_at < at))
            .values(last_used_at=at)
        )
