"""Database helpers: engine and session per service, naming convention, platform tables,
and the kit for driver-level bulk writes and reads.

Every service owns one database. Beside its own tables each has the platform tables
defined here (:data:`PLATFORM_TABLES`): ``processed_events`` (the tracking record a
consumer writes in the same transaction as the effect, so a redelivered event is
recognised), ``outbox`` (events to publish, written in the same transaction as the
change that caused them), ``idempotency_keys`` (responses of POSTs with an
``Idempotency-Key``) and ``kv_state`` (small named values).

The consumers' hot paths write and read thousands of rows per poll batch; SQLAlchemy's
per-row parameter handling and statement building cost more there than the database's
work. :func:`executemany`, :func:`insert_many` and :func:`select_in` go to the driver
instead, with every value converted the one way SQLAlchemy's types would store it
(:func:`bind_processors`; a SQLite timestamp is :func:`sqlite_datetime`'s naive UTC text).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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
    insert,
    text,
)
from sqlalchemy.engine import Connection, Dialect
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

    def file_lock(self, suffix: str) -> contextlib.AbstractContextManager[Any]:
        """On a SQLite file, a lock shared by this process's threads and every process using
        the same file (``<file><suffix>`` beside it); on an in-memory SQLite database, a
        thread lock; on PostgreSQL, none (its row locks do the job)."""
        if not self.is_sqlite:
            return contextlib.nullcontext()
        database = self.engine.url.database
        if database and database != ":memory:":
            return FileLock(database + suffix)
        return threading.Lock()

    def dispose(self) -> None:
        self.engine.dispose()


#: The platform tables every service database has (same definitions as in its metadata).
PLATFORM_TABLES = MetaData()
define_platform_tables(PLATFORM_TABLES)


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


# the bulk kit: driver-level writes and reads


def driver_connection(session: Session | Connection) -> tuple[Connection, str]:
    """The connection under ``session`` and its driver's placeholder mark (``?`` or ``%s``)."""
    connection = session.connection() if isinstance(session, Session) else session
    return connection, "?" if connection.dialect.paramstyle == "qmark" else "%s"


#: SQLite text of recently written or read instants: most poll batches write one time for
#: all their rows, and segment reads a customer's first / last purchase and writes them
#: back unchanged (~1 µs of formatting each)
_SQLITE_TEXTS: dict[datetime, str] = {}
_SQLITE_TEXTS_MAX = 50_000  # a few poll batches (~10 MiB at most)


def sqlite_datetime_memo() -> dict[datetime, str]:
    """:func:`sqlite_datetime`'s memo (instant -> stored text), emptied first when full: a
    reader that writes back what it read adds the texts it read, so writing is a lookup."""
    if len(_SQLITE_TEXTS) >= _SQLITE_TEXTS_MAX:
        _SQLITE_TEXTS.clear()
    return _SQLITE_TEXTS


def sqlite_datetime(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (``YYYY-MM-DD HH:MM:SS.ffffff``, naive
    UTC) for an instant; a naive ``value`` is taken as UTC. The one encoding of a timestamp
    written to SQLite at the driver level."""
    texts = _SQLITE_TEXTS
    found = texts.get(value)
    if found is not None:
        return found
    if value.tzinfo is UTC:
        found = value.isoformat(sep=" ", timespec="microseconds")[:26]
    elif value.tzinfo is not None:
        found = (
            value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        )
    else:
        found = value.isoformat(sep=" ", timespec="microseconds")
    if len(texts) >= _SQLITE_TEXTS_MAX:
        texts.clear()
    texts[value] = found
    return found


def read_datetime(value: Any) -> datetime | None:
    """A DateTime column's value as a driver returns it (SQLite: :func:`sqlite_datetime`'s
    naive UTC text; PostgreSQL: a datetime) as an aware datetime (UTC when stored naive)."""
    if value is None:
        return None
    if isinstance(value, str):
        # appending the offset is ~10x faster than .replace(tzinfo=UTC)
        return datetime.fromisoformat(value + "+00:00" if len(value) <= 26 else value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def epoch_microseconds_sql(column: str, dialect: str) -> str:
    """SQL giving a stored instant column as integer microseconds since 1970 (NULL stays
    NULL), for reads that take instants as numbers instead of parsing text in Python.

    SQLite: :func:`sqlite_datetime`'s text; the whole seconds through ``julianday`` (2.5x
    faster than ``strftime('%s')`` over 1,000,000 rows), rounded back to the second (its
    float arithmetic is ~1e-5 s off, and it would round a fraction to the millisecond:
    23:59:59.9997 became the next day), plus the six stored digits; an offset suffix, if a
    value carries one, is kept. PostgreSQL: the exact epoch of the timestamptz."""
    if dialect == "sqlite":
        return (
            f"(CAST(round((julianday(substr({column}, 1, 19) || substr({column}, 27))"
            f" - 2440587.5) * 86400.0) AS INTEGER) * 1000000"
            f" + CAST(substr({column}, 21, 6) AS INTEGER))"
        )
    return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"


def driver_time(moment: datetime, mark: str) -> Any:
    """A timestamp as the driver should receive it: on SQLite (``?``) the text form that
    SQLAlchemy's DateTime type writes and reads (:func:`sqlite_datetime`); elsewhere the
    datetime itself."""
    return sqlite_datetime(moment) if mark == "?" else moment


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


@lru_cache(maxsize=256)
def bind_processors(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...]:
    """Per column, what turns a Python value into what the driver should receive (None:
    nothing to do), as SQLAlchemy's column types would. On SQLite a DateTime becomes
    :func:`sqlite_datetime`'s text and a JSON value orjson's text (faster than the types'
    own processors, the same stored text for UTC instants); bytes and bools go as they
    are (both drivers take them: the types' processors only wrap them)."""
    processors: list[Callable[[Any], Any] | None] = []
    sqlite = dialect.name == "sqlite"
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, (LargeBinary, Boolean)):
            processors.append(None)
        elif sqlite and isinstance(column_type, DateTime):
            processors.append(sqlite_datetime)
        elif sqlite and isinstance(column_type, JSON):
            processors.append(_json_text)
        else:
            processors.append(column_type.dialect_impl(dialect).bind_processor(dialect))
    return tuple(processors)


def rows_of(dicts: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[Sequence[Any]]:
    """Dict rows as tuples of ``columns`` (itemgetter builds each tuple in C)."""
    if len(columns) == 1:
        name = columns[0]
        return [(row[name],) for row in dicts]
    return list(map(itemgetter(*columns), dicts))


def insert_sql(table: Table, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) VALUES (...)`` with a ``{mark}`` per value."""
    marks = ", ".join("{mark}" for _ in columns)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"


def update_sql(table: Table, columns: Sequence[str], key: str) -> str:
    """``UPDATE table SET column = {mark}, ... WHERE key = {mark}``."""
    assignments = ", ".join(f"{c} = {{mark}}" for c in columns)
    return f"UPDATE {table.name} SET {assignments} WHERE {key} = {{mark}}"


def upsert_sql(table: Table, columns: Sequence[str], key: str) -> str:
    """INSERT ... ON CONFLICT (key) DO UPDATE (SQLite >= 3.24 and PostgreSQL alike)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return f"{insert_sql(table, columns)} ON CONFLICT ({key}) DO UPDATE SET {updates}"


def executemany(
    session: Session | Connection,
    table: Table,
    sql: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    repeated: Collection[str] = (),
) -> int:
    """Run ``sql`` (a ``{mark}`` per placeholder) once per row with one DBAPI executemany;
    each row holds the values of ``columns`` (of ``table``) in that order. Returns the
    rows the statements touched (as the driver counts them).

    Each value goes through its column's :func:`bind_processors` first, column by column,
    without SQLAlchemy's per-row parameter machinery (on the consumers' hot paths it cost
    more than the database's work); the conversions of ``repeated`` columns (mostly one
    value, such as a batch's time) are memoised. The statement still goes through the
    connection, so statement listeners see one statement.
    """
    if not rows:
        return 0
    connection, mark = driver_connection(session)
    processors = bind_processors(table, tuple(columns), connection.dialect)
    prepared: Sequence[Sequence[Any]] = rows
    if any(p is not None for p in processors):
        values: list[Sequence[Any]] = list(zip(*rows, strict=True))
        _process_columns(values, columns, processors, repeated)
        prepared = list(zip(*values, strict=True))
    elif not isinstance(rows[0], tuple):
        prepared = [tuple(row) for row in rows]
    result = connection.exec_driver_sql(sql.format(mark=mark), list(prepared))
    return max(result.rowcount, 0)


def executemany_columns(
    session: Session | Connection,
    table: Table,
    sql: str,
    columns: Sequence[str],
    values: Sequence[Sequence[Any]],
    repeated: Collection[str] = (),
) -> int:
    """:func:`executemany` with the values given column by column (one sequence per column
    of ``columns``, all of one length): a caller that builds its values by column saves
    transposing them twice (a full rescoring's write of 168,741 rows: ~0.3 s)."""
    if not values or not len(values[0]):
        return 0
    connection, mark = driver_connection(session)
    processors = bind_processors(table, tuple(columns), connection.dialect)
    processed = list(values)
    _process_columns(processed, columns, processors, repeated)
    result = connection.exec_driver_sql(sql.format(mark=mark), list(zip(*processed, strict=True)))
    return max(result.rowcount, 0)


def _process_columns(
    values: list[Sequence[Any]],
    columns: Sequence[str],
    processors: Sequence[Callable[[Any], Any] | None],
    repeated: Collection[str],
) -> None:
    """Pass each column's values through its bind processor, in place."""
    for i, process in enumerate(processors):
        if process is None:
            continue
        if columns[i] in repeated:
            memo: dict[Any, Any] = {}
            values[i] = [
                None if v is None else memo[v] if v in memo else memo.setdefault(v, process(v))
                for v in values[i]
            ]
        else:
            values[i] = [None if v is None else process(v) for v in values[i]]


def insert_many(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    repeated: Collection[str] = (),
) -> None:
    """INSERT many dict rows (all with the same keys). On SQLite straight through the
    driver's executemany (about twice as fast as the Core path for thousands of rows);
    elsewhere the Core bulk insert (PostgreSQL's multi-row VALUES)."""
    if not rows:
        return
    if session.get_bind().dialect.name != "sqlite":
        session.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    executemany(
        session, table, insert_sql(table, columns), columns, rows_of(rows, columns), repeated
    )


class FileLock:
    """A lock shared by the threads of this process and, through ``flock`` on ``path``, by
    every process that locks the same file (processes sharing a SQLite database)."""

    def __init__(self, path: str) -> None:
        self._threads = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


def write_rows(
    session: Session | Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: str | None = None,
    repeated: Collection[str] = (),
) -> None:
    """INSERT dict rows (``key`` None), or UPDATE the rows whose ``key`` column matches,
    setting every other key of each row; one driver executemany per set of keys (both
    databases, as :func:`executemany`). A None value is SQL NULL, a JSON column's too."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for names, group in groups.items():
        if key is None:
            columns = list(names)
            sql = insert_sql(table, columns)
        else:
            columns = [*(n for n in names if n != key), key]
            sql = update_sql(table, columns[:-1], key)
        executemany(session, table, sql, columns, rows_of(group, columns), repeated)


def select_rows(
    session: Session | Connection, sql: str, parameters: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """The rows of one statement read from the driver's cursor (``{mark}`` in ``sql`` for
    each parameter): for small reads made on every request, where SQLAlchemy's statement
    and row handling cost more than the query (~0.1-0.2 ms against ~10 µs)."""
    connection, mark = driver_connection(session)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql.format(mark=mark), tuple(parameters))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def select_in(
    session: Session | Connection,
    sql: str,
    values: Iterable[Any],
    before: Sequence[Any] = (),
    size: int = 900,
) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` for ``values``, read from the driver's cursor ``size`` values at
    a time: ``{marks}`` in ``sql`` stands for the IN list of a chunk, each ``{mark}`` for
    one of ``before`` (parameters ahead of the list). Plain tuples: SQLAlchemy's expanding
    parameters and rows cost more than the lookups on the consumers' hot paths."""
    wanted = list(values)
    if not wanted:
        return []
    connection, mark = driver_connection(session)
    cursor = connection.connection.cursor()
    found: list[tuple[Any, ...]] = []
    try:
        for chunk in chunks(wanted, size):
            marks = ", ".join([mark] * len(chunk))
            cursor.execute(sql.format(mark=mark, marks=marks), (*before, *chunk))
            found += cursor.fetchall()
    finally:
        cursor.close()
    return found


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
    """Read a small named value kept in the service's ``kv_state`` table (at the driver:
    segment's scores read asks on every request)."""
    rows = select_rows(session, "SELECT value FROM kv_state WHERE name = {mark}", (name,))
    return None if not rows else rows[0][0]


def set_state(session: Session, name: str, value: str | None) -> None:
    """Write a small named value into the service's ``kv_state`` table."""
    updated = session.execute(
        text("UPDATE kv_state SET value = :v WHERE name = :n"), {"n": name, "v": value}
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.execute(
            text("INSERT INTO kv_state (name, value) VALUES (:n, :v)"), {"n": name, "v": value}
        )
