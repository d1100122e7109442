"""Every query of merges: their records, their snapshots, and unmerges."""

from __future__ import annotations

from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from services.profile.domain import Profile
from services.profile.models import (
    MergeRecord,
    MergeSnapshot,
    ProfileAlias,
    ProfileInteraction,
    ProfileOrder,
)
from services.profile.storage import decode_snapshot, encode_snapshot

SN = cast(Table, MergeSnapshot.__table__)
M = cast(Table, MergeRecord.__table__)


class MergeSnapshots:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, merge_id: str, profile_id: str, profile: Profile, ids: list[str]) -> None:
        """What an unmerge gives back: the profile (with its scores part) as it is now."""
        self.session.execute(
            insert(SN).values(
                merge_id=merge_id,
                profile_id=profile_id,
                doc=orjson.dumps(encode_snapshot(profile)).decode(),
                customer_ids=orjson.dumps(ids).decode(),
            )
        )

    def of(self, merge_id: str) -> dict[str, tuple[Profile, list[str]]]:
        return {
            pid: (decode_snapshot(orjson.loads(doc)), orjson.loads(ids))
            for pid, doc, ids in self.session.execute(
                select(SN.c.profile_id, SN.c.doc, SN.c.customer_ids).where(
                    SN.c.merge_id == merge_id
                )
            ).all()
        }

    def drop(self, merge_id: str) -> None:
        self.session.execute(delete(SN).where(SN.c.merge_id == merge_id))

    def drop_of(self, profile_ids: list[str]) -> None:
        """Erasure: snapshots of the person's profiles go with the rest."""
        self.session.execute(delete(SN).where(SN.c.profile_id.in_(profile_ids)))

    def merge(self, merge_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        """The merge record; ``for_update``: locked until the transaction ends (PostgreSQL;
        SQLite writers serialise on ``BEGIN IMMEDIATE``, see ``locking.py``)."""
        query = select(M).where(M.c.merge_id == merge_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).first()
        if row is None:
            return None
        found = dict(row._mapping)
        found["merged_ids"] = orjson.loads(found["merged_ids"])
        return found

    def move_customers(self, customer_ids: list[str], profile_id: str) -> None:
        """Aliases, orders and interactions of these customer ids belong to ``profile_id``."""
        for model in (ProfileAlias, ProfileOrder, ProfileInteraction):
            table = cast(Table, model.__table__)
            self.session.execute(
                update(table)
                .where(table.c.customer_id.in_(customer_ids))
                .values(profile_id=profile_id)
            )


class MergeRecords:
    """The merges made (a survivor and the profiles merged into it), for the export, and
    scrubbed by an erasure."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: dict[str, Any]) -> None:
        self.session.execute(
            insert(M), [{**row, "merged_ids": orjson.dumps(row["merged_ids"]).decode()}]
        )

    def of_survivor(self, profile_id: str) -> list[dict[str, Any]]:
        return [
            {
                "merge_id": mid,
                "survivor_id": survivor,
                "merged_ids": orjson.loads(merged),
                "reason": reason,
                "actor": actor,
                "merged_at": at,
            }
            for mid, survivor, merged, reason, actor, at in self.session.execute(
                select(
                    M.c.merge_id,
                    M.c.survivor_id,
                    M.c.merged_ids,
                    M.c.reason,
                    M.c.actor,
                    M.c.merged_at,
                )
                .where(M.c.survivor_id == profile_id)
                .order_by(M.c.merged_at)
            ).all()
        ]

    def scrub(self, profile_id: str, replacement: str) -> None:
        """Erasure: keep that a merge happened, not whose."""
        self.session.execute(
            update(M)
            .where(M.c.survivor_id == profile_id)
            .values(survivor_id=replacement, merged_ids="[]")
        )
