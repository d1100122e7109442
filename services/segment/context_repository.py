"""What scoring is configured with, stored: the policy versions, cut point sets and custom
segments with their members."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from services.segment.models import (
    CustomSegment,
    CutPointSet,
    ScoringPolicyVersion,
)
from services.segment.repository import CHUNK, MEMBERS, SEGMENTS
from shared.db import (
    chunks,
    read_datetime,
    select_rows,
)


class Policies:
    def __init__(self, session: Session) -> None:
        self.session = session

    def latest(self) -> ScoringPolicyVersion | None:
        return self.session.execute(
            select(ScoringPolicyVersion).order_by(ScoringPolicyVersion.version.desc()).limit(1)
        ).scalar_one_or_none()

    def latest_head(self) -> tuple[int, str | dict[str, Any], datetime | None] | None:
        """The newest version's number, stored policy (SQLite: JSON text; PostgreSQL: the
        decoded document) and creation time, read at the driver (every scores read asks)."""
        rows = select_rows(
            self.session,
            "SELECT version, policy, created_at FROM scoring_policies "
            "ORDER BY version DESC LIMIT 1",
        )
        if not rows:
            return None
        version, policy, created_at = rows[0]
        return int(version), policy, read_datetime(created_at)

    def history(self) -> list[ScoringPolicyVersion]:
        return list(
            self.session.execute(
                select(ScoringPolicyVersion).order_by(ScoringPolicyVersion.version)
            ).scalars()
        )

    def add(self, version: ScoringPolicyVersion) -> None:
        self.session.add(version)
        self.session.flush()


class CutPointSets:
    def __init__(self, session: Session) -> None:
        self.session = session

    def latest_body(self, policy_version: int) -> str | dict[str, Any] | None:
        """The newest set's body (SQLite: JSON text; PostgreSQL: the decoded document), read
        at the driver: every consumed batch asks."""
        rows = select_rows(
            self.session,
            "SELECT body FROM cut_points WHERE policy_version = {mark} ORDER BY id DESC LIMIT 1",
            (policy_version,),
        )
        return rows[0][0] if rows else None

    def latest_at(self, policy_version: int, as_of: datetime) -> CutPointSet | None:
        """The newest set of this policy version computed for a time at or before ``as_of``."""
        return self.session.execute(
            select(CutPointSet)
            .where(
                CutPointSet.policy_version == policy_version,
                CutPointSet.as_of <= as_of.astimezone(UTC),
            )
            .order_by(CutPointSet.as_of.desc(), CutPointSet.id.desc())
            .limit(1)
        ).scalar_one_or_none()

    def add(self, cut_points: CutPointSet) -> None:
        self.session.add(cut_points)
        self.session.flush()


class Segments:
    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> list[CustomSegment]:
        return list(
            self.session.execute(select(CustomSegment).order_by(CustomSegment.segment_id)).scalars()
        )

    def get(self, segment_id: str) -> CustomSegment | None:
        return self.session.get(CustomSegment, segment_id)

    def add(self, segment: CustomSegment) -> None:
        self.session.add(segment)
        self.session.flush()

    def members_page(self, segment_id: str, after: str | None, limit: int) -> list[str]:
        query = (
            select(MEMBERS.c.customer_id)
            .where(MEMBERS.c.segment_id == segment_id)
            .order_by(MEMBERS.c.customer_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(MEMBERS.c.customer_id > after)
        return list(self.session.execute(query).scalars())

    def add_members(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(insert(MEMBERS), rows)

    def remove_members(self, pairs: list[tuple[str, str]]) -> None:
        by_segment: dict[str, list[str]] = {}
        for segment_id, customer_id in pairs:
            by_segment.setdefault(segment_id, []).append(customer_id)
        for segment_id, customers in by_segment.items():
            for chunk in chunks(customers, CHUNK):
                self.session.execute(
                    delete(MEMBERS).where(
                        MEMBERS.c.segment_id == segment_id, MEMBERS.c.customer_id.in_(chunk)
                    )
                )

    def remove_customer(self, customer_id: str) -> None:
        self.session.execute(delete(MEMBERS).where(MEMBERS.c.customer_id == customer_id))

    def refresh_counts(self, segment_ids: Iterable[str]) -> None:
        for segment_id in set(segment_ids):
            count = self.session.execute(
                select(func.count()).select_from(MEMBERS).where(MEMBERS.c.segment_id == segment_id)
            ).scalar_one()
            self.session.execute(
                update(SEGMENTS)
                .where(SEGMENTS.c.segment_id == segment_id)
                .values(member_count=count)
            )
