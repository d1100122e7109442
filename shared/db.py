"""Database helpers: engine and session per service, naming convention, platform tables.

Every service owns one database. Beside its own tables each has three platform
tables defined here: ``processed_events`` (the tracking record a consumer writes
in the same transaction as the effect, so a redelivered event is recognised),
``outbox`` (events to publish, written in the same transaction as the change
that caused them) and ``idempotency_keys`` (responses of POSTs with an
``Idempotency-Key``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> MetaData:
    """A MetaData with the constraint naming convention and the platform tables."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    define_platform_tables(metadata)
    return metadata


# BigInteger autoincrement that works on SQLite too (SQLite only autoincrements INTEGER).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def define_platform_tables(metadata: MetaData) -> None:
    Table(
        "processed_events",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(200), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
        Index("ix_processed_events_processed_at", "processed_at"),
    )
    Table(
        "outbox",
        metadata,
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(500), nullable=True),
        Column("value", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index("ix_outbox_unpublished", "published_at", "id"),
    )
    Table(
        "idempotency_keys",
        metadata,
        Column("key", String(255), primary_key=True),
        Column("scope", String(255), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=True),
        Column("response_body", LargeBinary, nullable=True),
        Column("response_headers", JSON, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("completed_at", DateTime(timezone=True), nullable=True),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )
    Table(
        "kv_state",
        metadata,
        Column("name", String(200), primary_key=True),
        Column("value", Text, nullable=True),
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the consumer writes; busy_timeout makes writers queue.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Zero deleted content in pages that are written anyway, so erased personal data
    # does not linger in the file (FAST: no extra I/O).
    cursor.execute("PRAGMA secure_delete=FAST")
    cursor.close()


@contextmanager
def secure_deletion(session: Session) -> Iterator[None]:
    """Within this block, SQLite overwrites every deleted byte with zeros (``secure_delete=ON``),
    overflow pages of large rows included: ``FAST``, the default on every connection, leaves
    freed overflow pages as they were, so a large document (an export, a big profile) would
    linger in the file after an erasure. PostgreSQL: nothing (see :meth:`Database.checkpoint`)."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        connection.exec_driver_sql("PRAGMA secure_delete=FAST")


def make_engine(
    url: str, *, sqlite_pragmas: Mapping[str, int | str] | None = None, **kwargs: Any
) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and their folder created,
    then ``sqlite_pragmas`` (e.g. ``ServiceSettings.sqlite_pragmas``) on every connection."""
    if url.startswith("sqlite"):
        connect_args = kwargs.pop("connect_args", {})
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("timeout", 30)
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs.setdefault("poolclass", StaticPool)
        else:
            path = url.split("///", 1)[-1]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        if sqlite_pragmas:
            statements = [f"PRAGMA {name}={value}" for name, value in sqlite_pragmas.items()]

            def _extra_pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                for statement in statements:
                    cursor.execute(statement)
                cursor.close()

            event.listen(engine, "connect", _extra_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


@dataclass
class Database:
    """One service's engine and session factory."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        engine = make_engine(url, **kwargs)
        return cls(engine, sessionmaker(engine, expire_on_commit=False))

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session that commits at the end of the block, or rolls back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        """Raise if the database cannot answer ``SELECT 1``."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def checkpoint(self, mode: Literal["TRUNCATE", "PASSIVE"] = "TRUNCATE") -> None:
        """Fold SQLite's write-ahead log into the file.

        TRUNCATE (after an erasure): the WAL keeps old copies of changed pages (with the
        erased personal data) until a checkpoint, and TRUNCATE empties it; best effort:
        readers active at that moment may leave part of it for the next checkpoint.
        PASSIVE (the periodic background checkpoint): copies what it can while writers go
        on. PostgreSQL needs neither (autovacuum reclaims dead rows).
        """
        if not self.is_sqlite:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def dispose(self) -> None:
        self.engine.dispose()


_PLATFORM = MetaData()
define_platform_tables(_PLATFORM)


def prune_platform_tables(
    db: Database, *, processed_before: datetime, idempotency_before: datetime, chunk: int = 5000
) -> dict[str, int]:
    """Delete tracking records processed before ``processed_before`` and idempotency keys
    created before ``idempotency_before``, a chunk per transaction (short locks); returns
    how many rows left each table."""
    deleted: dict[str, int] = {}
    for name, column, before in (
        ("processed_events", "processed_at", processed_before),
        ("idempotency_keys", "created_at", idempotency_before),
    ):
        # the oldest rows by the time index, deleted by physical row id (SQLite's rowid,
        # PostgreSQL's ctid as an array: a TID scan, where `ctid IN (subquery)` would scan
        # the whole table for every chunk)
        if db.is_sqlite:
            sql = (
                f"DELETE FROM {name} WHERE rowid IN "
                f"(SELECT rowid FROM {name} WHERE {column} < :before LIMIT :chunk)"
            )
        else:
            sql = (
                f"DELETE FROM {name} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {name} WHERE {column} < :before LIMIT :chunk))"
            )
        statement = text(sql).bindparams(
            bindparam("before", type_=DateTime(timezone=True)), bindparam("chunk")
        )
        total = 0
        while True:
            with db.engine.begin() as conn:
                result = conn.execute(statement, {"before": before, "chunk": chunk})
                count = result.rowcount or 0
            total += count
            if count < chunk:
                break
        deleted[name] = total
    return deleted


def chunks(values: Sequence[T], size: int = 500) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size`` (bounded IN lists and executemany batches)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def run_migrations(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """Apply a service's Alembic migrations to ``url`` (used at start and by ``migrate``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(cfg, revision)


def get_state(session: Session, name: str) -> str | None:
    """Read a small named value kept in the service's ``kv_state`` table."""
    row = session.execute(text("SELECT value FROM kv_state WHERE name = :n"), {"n": name}).first()
    return None if row is None else row[0]


def set_state(session: Session, name: str, value: str | None) -> None:
    """Write a small named value into the service's ``kv_state`` table."""
    updated = session.execute(
        text("UPDATE kv_state SET value = :v WHERE name = :n"), {"n": name, "v": value}
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.execute(
            text("INSERT INTO kv_state (name, value) VALUES (:n, :v)"), {"n": name, "v": value}
        )
