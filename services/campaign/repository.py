"""Every query the campaign service makes about its campaigns: campaigns and their launch
runs, entries, skipped trigger occurrences (what it projects from other services' events:
``projection_repository``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.campaign.models import (
    Campaign,
    CustomerOrder,
    Entry,
    LaunchRun,
    Receipt,
    TriggerSkip,
)
from shared.db import chunks, executemany, insert_sql
from shared.events import ensure_aware

IN_CHUNK = 500

#: The column order of the tuples :meth:`Entries.add_many` takes.
ENTRY_COLUMNS = (
    "campaign_id",
    "customer_id",
    "entry_no",
    "run_no",
    "entered_at",
    "outcome",
    "reason",
    "message_id",
    "channel",
    "not_before",
    "trigger_key",
)
ENTRIES = cast(Table, Entry.__table__)
_INSERT_ENTRIES = insert_sql(ENTRIES, ENTRY_COLUMNS)


def insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
    session.execute(statement.on_conflict_do_nothing(), rows)


class Campaigns:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, campaign: Campaign) -> Campaign:
        self.session.add(campaign)
        self.session.flush()
        return campaign

    def get(self, campaign_id: str, *, for_update: bool = False) -> Campaign | None:
        query = select(Campaign).where(Campaign.campaign_id == campaign_id)
        if for_update:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def many(self, campaign_ids: Sequence[str]) -> list[Campaign]:
        return list(
            self.session.scalars(select(Campaign).where(Campaign.campaign_id.in_(campaign_ids)))
        )

    def page(
        self, *, status: str | None, after: tuple[str, str] | None, limit: int
    ) -> list[Campaign]:
        """Newest first; ``after`` is the (created_at iso, id) of the last item seen."""
        query = select(Campaign).order_by(Campaign.created_at.desc(), Campaign.campaign_id.desc())
        if status:
            query = query.where(Campaign.status == status)
        if after is not None:
            created = datetime.fromisoformat(after[0])
            query = query.where(
                (Campaign.created_at < created)
                | ((Campaign.created_at == created) & (Campaign.campaign_id < after[1]))
            )
        return list(self.session.scalars(query.limit(limit)))

    def armed_triggered(self) -> list[Campaign]:
        return [
            c
            for c in self.session.scalars(select(Campaign).where(Campaign.status == "running"))
            if c.trigger
        ]

    def due(self, now: datetime) -> list[Campaign]:
        return list(
            self.session.scalars(
                select(Campaign).where(
                    Campaign.status.in_(("scheduled", "running")),
                    Campaign.next_run_at.is_not(None),
                    Campaign.next_run_at <= now,
                )
            )
        )

    def running_batch(self) -> list[Campaign]:
        return [
            c
            for c in self.session.scalars(select(Campaign).where(Campaign.status == "running"))
            if not c.trigger
        ]

    # runs

    def runs(self, campaign_id: str) -> list[LaunchRun]:
        return list(
            self.session.scalars(
                select(LaunchRun)
                .where(LaunchRun.campaign_id == campaign_id)
                .order_by(LaunchRun.run_no)
            )
        )

    def add_run(self, run: LaunchRun) -> LaunchRun:
        self.session.add(run)
        self.session.flush()
        return run

    def run(self, campaign_id: str, run_no: int) -> LaunchRun | None:
        return self.session.get(LaunchRun, (campaign_id, run_no))


class PastEntry(NamedTuple):
    """An earlier entry of a customer into a campaign, as the re-entry rules read it."""

    entry_no: int
    run_no: int
    entered_at: datetime
    trigger_key: str | None


class Entries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert entry rows (tuples in ``ENTRY_COLUMNS`` order) with one DBAPI executemany.

        A launch writes millions of them: this skips per-row SQLAlchemy processing.
        """
        executemany(self.session, ENTRIES, _INSERT_ENTRIES, ENTRY_COLUMNS, rows)

    def for_customers(
        self, campaign_ids: Sequence[str], customer_ids: Sequence[str]
    ) -> dict[tuple[str, str], list[PastEntry]]:
        """These campaigns' earlier entries per (campaign, customer)."""
        found: dict[tuple[str, str], list[PastEntry]] = defaultdict(list)
        for chunk in chunks(list(dict.fromkeys(customer_ids)), IN_CHUNK):
            for row in self.session.execute(
                select(
                    Entry.campaign_id,
                    Entry.customer_id,
                    Entry.entry_no,
                    Entry.run_no,
                    Entry.entered_at,
                    Entry.trigger_key,
                ).where(Entry.campaign_id.in_(list(campaign_ids)), Entry.customer_id.in_(chunk))
            ):
                found[row.campaign_id, row.customer_id].append(
                    PastEntry(row.entry_no, row.run_no, row.entered_at, row.trigger_key)
                )
        return found

    def of_customers(self, customer_ids: Sequence[str]) -> list[Any]:
        """Every entry of these customers, in any campaign (a merge re-keys them)."""
        found: list[Any] = []
        for chunk in chunks(list(dict.fromkeys(customer_ids)), IN_CHUNK):
            found += self.session.execute(
                select(
                    Entry.id,
                    Entry.campaign_id,
                    Entry.customer_id,
                    Entry.entry_no,
                    Entry.run_no,
                    Entry.entered_at,
                    Entry.outcome,
                    Entry.trigger_key,
                    Entry.counted,
                ).where(Entry.customer_id.in_(chunk))
            ).all()
        return found

    def rekey(self, changes: list[dict[str, Any]]) -> None:
        """Set ``customer_id``, ``entry_no`` and ``counted`` of entries by ``id`` (executemany)."""
        if changes:
            self.session.execute(update(Entry), changes)

    def recent_contacts(
        self, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, list[datetime]]:
        """When each customer was sent a message (by any campaign) since ``since``."""
        found: dict[str, list[datetime]] = defaultdict(list)
        for chunk in chunks(list(customer_ids), IN_CHUNK):
            for customer_id, at in self.session.execute(
                select(Entry.customer_id, Entry.entered_at).where(
                    Entry.customer_id.in_(chunk), Entry.outcome == "sent", Entry.entered_at >= since
                )
            ):
                found[customer_id].append(ensure_aware(at))
        return found

    def has_any_since(self, since: datetime) -> bool:
        return (
            self.session.scalar(
                select(Entry.id).where(Entry.outcome == "sent", Entry.entered_at >= since).limit(1)
            )
            is not None
        )

    def counts(self, campaign_id: str) -> list[Any]:
        """(outcome, reason, deferred, count) of one campaign's counted entries."""
        deferred = Entry.not_before.is_not(None)
        return list(
            self.session.execute(
                select(Entry.outcome, Entry.reason, deferred.label("deferred"), func.count())
                .where(Entry.campaign_id == campaign_id, Entry.counted.is_(True))
                .group_by(Entry.outcome, Entry.reason, deferred)
            )
        )

    def last_entered_at(self, campaign_id: str) -> datetime | None:
        value = self.session.scalar(
            select(func.max(Entry.entered_at)).where(Entry.campaign_id == campaign_id)
        )
        return ensure_aware(value) if value is not None else None

    def measured(self, campaign_id: str) -> list[Any]:
        """(customer_id, entered_at, outcome) of the treatment and holdout members."""
        return list(
            self.session.execute(
                select(Entry.customer_id, Entry.entered_at, Entry.outcome).where(
                    Entry.campaign_id == campaign_id,
                    Entry.outcome.in_(("sent", "holdout")),
                    Entry.counted.is_(True),
                )
            )
        )

    def member_orders(self, campaign_id: str) -> list[Any]:
        """Valid orders of the measured members: (customer_id, paid_at, net_amount_e4, currency)."""
        members = (
            select(Entry.customer_id)
            .where(
                Entry.campaign_id == campaign_id,
                Entry.outcome.in_(("sent", "holdout")),
                Entry.counted.is_(True),
            )
            .distinct()
            .scalar_subquery()
        )
        return list(
            self.session.execute(
                select(
                    CustomerOrder.customer_id,
                    CustomerOrder.paid_at,
                    CustomerOrder.net_amount_e4,
                    CustomerOrder.currency,
                ).where(CustomerOrder.valid.is_(True), CustomerOrder.customer_id.in_(members))
            )
        )

    def receipt_counts(self, campaign_id: str) -> dict[str, int]:
        rows = self.session.execute(
            select(Receipt.status, func.count(func.distinct(Receipt.message_id)))
            .join(Entry, Entry.message_id == Receipt.message_id)
            .where(Entry.campaign_id == campaign_id, Entry.counted.is_(True))
            .group_by(Receipt.status)
        )
        return {status: int(count) for status, count in rows}


class TriggerSkips:
    """Trigger occurrences skipped by running campaigns (``services/campaign/skips.py``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, rows: list[dict[str, Any]]) -> None:
        insert_ignoring_duplicates(self.session, TriggerSkip.__table__, rows)

    def counts(self, campaign_id: str) -> dict[str, int]:
        query = (
            select(TriggerSkip.reason, func.count())
            .where(TriggerSkip.campaign_id == campaign_id)
            .group_by(TriggerSkip.reason)
        )
        return {reason: int(count) for reason, count in self.session.execute(query)}
