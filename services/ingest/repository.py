"""Every query ingest makes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, literal, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.ingest.models import (
    ErasedCustomer,
    ImportJob,
    ImportRejection,
    IntakeCount,
    StoredEvent,
)
from shared.db import PLATFORM_TABLES, chunks, insert_many, set_state
from shared.events import ensure_aware, utcnow

_CHUNK = 500


class EventStore:
    """The durable event store: every accepted record version, in arrival order."""

    table = cast(Table, StoredEvent.__table__)

    def __init__(self, session: Session) -> None:
        self.session = session

    def versions_of(self, kind: str, entity_ids: Iterable[str]) -> dict[str, set[str]]:
        """The stored versions of each entity (only entities that have any)."""
        ids = list(dict.fromkeys(entity_ids))
        found: dict[str, set[str]] = {}
        for start in range(0, len(ids), _CHUNK):
            rows = self.session.execute(
                _VERSIONS, {"kind": kind, "ids": ids[start : start + _CHUNK]}
            )
            for entity_id, version in rows:
                found.setdefault(entity_id, set()).add(version)
        return found

    def envelopes_of_versions(
        self, kind: str, versions: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], bytes]:
        """The stored envelope of each ``(entity id, version)`` that is stored."""
        t = self.table
        wanted = set(versions)
        found: dict[tuple[str, str], bytes] = {}
        ids = sorted({entity for entity, _ in wanted})
        for start in range(0, len(ids), _CHUNK):
            rows = self.session.execute(
                select(t.c.entity_id, t.c.version, t.c.envelope).where(
                    t.c.kind == kind, t.c.entity_id.in_(ids[start : start + _CHUNK])
                )
            )
            for entity_id, version, envelope in rows:
                if (entity_id, version) in wanted:
                    found[(entity_id, version)] = bytes(envelope)
        return found

    def append(self, row: dict[str, Any]) -> int:
        """Store one version; returns its sequence number."""
        return int(self.session.execute(_APPEND, [row]).scalar_one())

    def append_many(self, rows: Sequence[dict[str, Any]]) -> None:
        # a batch's rows share received_at: converted once
        insert_many(self.session, self.table, rows, repeated=("received_at",))

    # erasure tombstones

    def add_tombstone(self, customer_hash: str, erased_at: datetime) -> None:
        """Remember an erasure (the latest, if the customer was erased more than once)."""
        table = cast(Table, ErasedCustomer.__table__)
        insert_on = _insert_with_conflicts(self.session.get_bind().dialect.name)
        stmt = insert_on(table).values(customer_hash=customer_hash, erased_at=erased_at)
        self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["customer_hash"],
                set_={"erased_at": stmt.excluded.erased_at},
                where=table.c.erased_at < stmt.excluded.erased_at,
            )
        )

    def tombstones(self, customer_hashes: set[str]) -> dict[str, datetime]:
        """``{hash: erased_at}`` of those among ``customer_hashes`` that were erased."""
        if not customer_hashes:
            return {}
        table = cast(Table, ErasedCustomer.__table__)
        found: dict[str, datetime] = {}
        for chunk in chunks(sorted(customer_hashes)):
            rows = self.session.execute(
                select(table.c.customer_hash, table.c.erased_at).where(
                    table.c.customer_hash.in_(chunk)
                )
            )
            found.update((h, ensure_aware(at)) for h, at in rows)
        return found

    def serialise_writers(self) -> None:
        """Make concurrent writers store one after another until their transactions end
        (PostgreSQL; SQLite has one writer anyway), so sequence numbers become visible in
        order and the relay's published-sequence watermark never passes a row that a
        slower transaction has not committed yet."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(_WRITER_LOCK)

    # the store is its own outbox: current versions past the watermark are unpublished

    def published_sequence(self, for_update: bool = False) -> int:
        """The sequence up to which every current version was acknowledged by the broker."""
        query = _WATERMARK.with_for_update() if for_update else _WATERMARK
        value = self.session.execute(query).scalar_one_or_none()
        return int(value) if value else 0

    def advance_published(self, expected: int, sequence: int) -> bool:
        """Move the watermark from ``expected`` to ``sequence`` unless someone moved it
        meanwhile (a replay reset it): compare-and-set, returns whether it moved."""
        kv = PLATFORM_TABLES.tables["kv_state"]
        if expected == 0 and self.session.execute(_WATERMARK).first() is None:
            self.session.execute(insert(kv).values(name=PUBLISHED_STATE, value=str(sequence)))
            return True
        old = {str(expected)} if expected else {"0", ""}
        result = self.session.execute(
            update(kv)
            .where(kv.c.name == PUBLISHED_STATE, kv.c.value.in_(old))
            .values(value=str(sequence))
        )
        return bool(getattr(result, "rowcount", 0))

    def reset_published(self, sequence: int = 0) -> None:
        """Everything current after ``sequence`` is published again (an emptied broker)."""
        set_state(self.session, PUBLISHED_STATE, str(sequence))

    def unpublished(self, after: int, limit: int) -> list[tuple[int, str, str, bytes]]:
        """Current versions past ``after``, in sequence order: ``(sequence, topic, key, value)``."""
        rows = self.session.execute(_UNPUBLISHED, {"after": after, "limit": limit})
        return [(int(s), str(t), str(k), bytes(v)) for s, t, k, v in rows]

    def unpublished_count(self) -> int:
        t = self.table
        after = self.published_sequence()
        query = select(func.count()).where(t.c.current.is_(True), t.c.sequence > after)
        return int(self.session.execute(query).scalar_one())

    def current_count(self) -> int:
        query = select(func.count()).where(self.table.c.current.is_(True))
        return int(self.session.execute(query).scalar_one())

    def count(self) -> int:
        return int(self.session.execute(select(func.count()).select_from(self.table)).scalar_one())

    def last_sequence(self) -> int:
        value = self.session.execute(select(func.max(self.table.c.sequence))).scalar_one()
        return int(value or 0)

    def replay_into_outbox(
        self,
        *,
        from_sequence: int | None = None,
        to_sequence: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        kinds: Sequence[str] | None = None,
    ) -> int:
        """Queue the current (published) versions in a range for publication again.

        One INSERT ... SELECT: nothing is loaded into memory, whatever the range.
        """
        t = self.table
        outbox = PLATFORM_TABLES.tables["outbox"]
        query = select(t.c.topic, t.c.customer_id, t.c.envelope, literal(utcnow())).where(
            t.c.current.is_(True)
        )
        if from_sequence is not None:
            query = query.where(t.c.sequence >= from_sequence)
        if to_sequence is not None:
            query = query.where(t.c.sequence <= to_sequence)
        if since is not None:
            query = query.where(t.c.received_at >= since)
        if until is not None:
            query = query.where(t.c.received_at < until)
        if kinds:
            query = query.where(t.c.kind.in_(list(kinds)))
        # count first: SQLite reports no rowcount for INSERT ... SELECT
        count = self.session.execute(
            select(func.count()).select_from(query.subquery())
        ).scalar_one()
        if count:
            self.session.execute(
                insert(outbox).from_select(
                    ["topic", "key", "value", "created_at"], query.order_by(t.c.sequence)
                )
            )
        return int(count)

    def history_of(self, kind: str, entity_id: str) -> list[Any]:
        """Every stored version of one entity in arrival order: ``(sequence, version,
        current, source, received_at, envelope)`` rows."""
        t = self.table
        return list(
            self.session.execute(
                select(
                    t.c.sequence,
                    t.c.version,
                    t.c.current,
                    t.c.source,
                    t.c.received_at,
                    t.c.envelope,
                )
                .where(t.c.kind == kind, t.c.entity_id == entity_id)
                .order_by(t.c.sequence)
            )
        )

    def subject_history(self, customer_ids: list[str]) -> list[Any]:
        """Every stored version of these customers' records in arrival order: ``(kind,
        entity_id, sequence, version, current, source, received_at, envelope)`` rows."""
        t = self.table
        return list(
            self.session.execute(
                select(
                    t.c.kind,
                    t.c.entity_id,
                    t.c.sequence,
                    t.c.version,
                    t.c.current,
                    t.c.source,
                    t.c.received_at,
                    t.c.envelope,
                )
                .where(t.c.customer_id.in_(customer_ids))
                .order_by(t.c.sequence)
            )
        )

    def envelopes_of(self, customer_id: str) -> list[tuple[int, str, bytes]]:
        t = self.table
        rows = self.session.execute(
            select(t.c.sequence, t.c.kind, t.c.envelope).where(t.c.customer_id == customer_id)
        )
        return [(int(s), str(k), bytes(e)) for s, k, e in rows]

    def replace_envelope(self, sequence: int, envelope: bytes) -> None:
        self.session.execute(
            update(self.table).where(self.table.c.sequence == sequence).values(envelope=envelope)
        )

    def replace_pending(self, key: str, values: dict[bytes, bytes]) -> None:
        """Rewrite unpublished outbox rows of one key (``old value -> new value``)."""
        outbox = PLATFORM_TABLES.tables["outbox"]
        rows = self.session.execute(
            select(outbox.c.id, outbox.c.value).where(outbox.c.key == key)
        ).all()
        for row_id, value in rows:
            new = values.get(bytes(value))
            if new is not None:
                self.session.execute(update(outbox).where(outbox.c.id == row_id).values(value=new))

    def lock_for_replay(self) -> None:
        """Hold off new versions until this transaction ends (PostgreSQL; SQLite has one
        writer anyway), so the pending rows dropped and the versions re-queued agree."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(text("LOCK TABLE stored_events IN SHARE ROW EXCLUSIVE MODE"))

    def drop_pending(self, topic_names: Sequence[str]) -> int:
        """Delete unpublished outbox rows of these topics (before re-queueing them all)."""
        outbox = PLATFORM_TABLES.tables["outbox"]
        result = self.session.execute(delete(outbox).where(outbox.c.topic.in_(list(topic_names))))
        return int(getattr(result, "rowcount", 0) or 0)

    def outbox_rows(self) -> list[tuple[str, str | None, bytes]]:
        outbox = PLATFORM_TABLES.tables["outbox"]
        query = select(outbox.c.topic, outbox.c.key, outbox.c.value).order_by(outbox.c.id)
        return [(str(t), k, bytes(v)) for t, k, v in self.session.execute(query)]

    def outbox_count(self) -> int:
        outbox = PLATFORM_TABLES.tables["outbox"]
        return int(self.session.execute(select(func.count()).select_from(outbox)).scalar_one())

    def outbox_has(self, topic: str) -> bool:
        outbox = PLATFORM_TABLES.tables["outbox"]
        row = self.session.execute(select(outbox.c.id).where(outbox.c.topic == topic).limit(1))
        return row.first() is not None


_STORED = cast(Table, StoredEvent.__table__)
# built once: constructing statements costs more than running them for one small record
_VERSIONS = select(_STORED.c.entity_id, _STORED.c.version).where(
    _STORED.c.kind == bindparam("kind"), _STORED.c.entity_id.in_(bindparam("ids", expanding=True))
)
_APPEND = insert(_STORED).returning(_STORED.c.sequence)
PUBLISHED_STATE = "published_sequence"
_KV = PLATFORM_TABLES.tables["kv_state"]
_WATERMARK = select(_KV.c.value).where(_KV.c.name == PUBLISHED_STATE)
_UNPUBLISHED = (
    select(_STORED.c.sequence, _STORED.c.topic, _STORED.c.customer_id, _STORED.c.envelope)
    .where(_STORED.c.current.is_(True), _STORED.c.sequence > bindparam("after"))
    .order_by(_STORED.c.sequence)
    .limit(bindparam("limit"))
)
# any constant: the transaction-level advisory lock every PostgreSQL writer of the store takes
_WRITER_LOCK = text("SELECT pg_advisory_xact_lock(7311970004)")
_UPSERTS: dict[str, Any] = {}


def _insert_with_conflicts(dialect: str) -> Any:
    """The dialect's INSERT that takes ON CONFLICT clauses (PostgreSQL and SQLite alike)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _upsert_counts(dialect: str) -> Any:
    if dialect not in _UPSERTS:
        table = cast(Table, IntakeCount.__table__)
        stmt = _insert_with_conflicts(dialect)(table)
        _UPSERTS[dialect] = stmt.on_conflict_do_update(
            index_elements=["minute", "source", "kind", "outcome", "reason"],
            set_={"count": table.c["count"] + stmt.excluded["count"]},
        )
    return _UPSERTS[dialect]


class IntakeStats:
    """Counts of accepted / duplicate / rejected records per minute, source, kind, reason."""

    table = cast(Table, IntakeCount.__table__)

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self, minute: datetime, source: str, kind: str, counts: dict[tuple[str, str], int]
    ) -> None:
        """Add ``{(outcome, reason): n}`` to the minute's counters (an upsert)."""
        if not counts:
            return
        rows = [
            {
                "minute": minute,
                "source": source,
                "kind": kind,
                "outcome": outcome,
                "reason": reason,
                "count": n,
            }
            for (outcome, reason), n in sorted(counts.items())
        ]
        dialect = self.session.get_bind().dialect.name
        self.session.execute(_upsert_counts(dialect), rows)

    def totals_since(self, since: datetime) -> list[tuple[str, str, str, str, int]]:
        """``(source, kind, outcome, reason, count)`` summed over minutes from ``since``."""
        t = self.table
        rows = self.session.execute(
            select(t.c.source, t.c.kind, t.c.outcome, t.c.reason, func.sum(t.c["count"]))
            .where(t.c.minute >= since)
            .group_by(t.c.source, t.c.kind, t.c.outcome, t.c.reason)
        )
        return [(s, k, o, r, int(n)) for s, k, o, r, n in rows]


class Imports:
    """Import jobs and their rejected rows."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job: ImportJob) -> None:
        self.session.add(job)
        self.session.flush()

    def get(self, job_id: str) -> ImportJob | None:
        return self.session.get(ImportJob, job_id)

    def update(self, job_id: str, **values: Any) -> None:
        self.session.execute(update(ImportJob).where(ImportJob.job_id == job_id).values(**values))

    def add_progress(
        self,
        job_id: str,
        rows: int,
        accepted: int,
        duplicate: int,
        rejected: int,
        warned: int = 0,
        last_line: int | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "rows_read": ImportJob.rows_read + rows,
            "accepted": ImportJob.accepted + accepted,
            "duplicate": ImportJob.duplicate + duplicate,
            "rejected": ImportJob.rejected + rejected,
            "warned": ImportJob.warned + warned,
        }
        if last_line is not None:
            values["last_line"] = last_line
        self.session.execute(update(ImportJob).where(ImportJob.job_id == job_id).values(**values))

    def add_rejections(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(insert(cast(Table, ImportRejection.__table__)), list(rows))

    def rejections(self, job_id: str, after_row: int, limit: int) -> list[ImportRejection]:
        return list(
            self.session.execute(
                select(ImportRejection)
                .where(ImportRejection.job_id == job_id, ImportRejection.row_number > after_row)
                .order_by(ImportRejection.row_number)
                .limit(limit)
            ).scalars()
        )

    def count_rows(self, job_id: str) -> int:
        """How many rejected / warned rows of the job are kept."""
        return int(
            self.session.scalar(
                select(func.count())
                .select_from(ImportRejection)
                .where(ImportRejection.job_id == job_id)
            )
            or 0
        )

    def unfinished(self) -> list[ImportJob]:
        return list(
            self.session.execute(
                select(ImportJob).where(ImportJob.status.in_(("queued", "running")))
            ).scalars()
        )
