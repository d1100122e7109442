"""shared.db: engines and their SQLite tuning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from pydantic_settings import SettingsConfigDict
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    select,
    text,
)

from shared.config import ServiceSettings
from shared.db import (
    Database,
    executemany,
    insert_many,
    insert_sql,
    make_engine,
    read_datetime,
    select_in,
    select_rows,
    sqlite_datetime,
    update_sql,
    write_rows,
)
from shared.events import ensure_aware


def _pragma(engine, name: str):
    with engine.connect() as conn:
        return conn.execute(text(f"PRAGMA {name}")).scalar()


def test_sqlite_engines_get_the_shared_pragmas_then_the_service_ones(tmp_path: Path) -> None:
    plain = make_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    assert _pragma(plain, "journal_mode") == "wal"
    assert _pragma(plain, "wal_autocheckpoint") == 1000  # SQLite's default
    tuned = make_engine(
        f"sqlite:///{tmp_path / 'tuned.db'}",
        sqlite_pragmas={"cache_size": -8192, "wal_autocheckpoint": 5000, "temp_store": "MEMORY"},
    )
    # every pooled connection, not only the first
    with tuned.connect() as first, tuned.connect() as second:
        for conn in (first, second):
            assert conn.execute(text("PRAGMA cache_size")).scalar() == -8192
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 5000
            assert conn.execute(text("PRAGMA temp_store")).scalar() == 2  # MEMORY
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    plain.dispose()
    tuned.dispose()


def test_sqlite_tuning_comes_from_each_services_settings(monkeypatch) -> None:
    class DemoSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore")

    monkeypatch.setenv("DEMO_SQLITE_CACHE_MIB", "32")
    monkeypatch.setenv("DEMO_SQLITE_WAL_AUTOCHECKPOINT_PAGES", "20000")
    pragmas = DemoSettings().sqlite_pragmas
    assert pragmas["cache_size"] == -32 * 1024
    assert pragmas["wal_autocheckpoint"] == 20000


def test_a_background_checkpoint_replaces_the_automatic_one(tmp_path: Path) -> None:
    from shared.db import Database
    from shared.runtime import ServiceRuntime

    class DemoSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore")

    settings = DemoSettings(data_dir=tmp_path, sqlite_background_checkpoint_seconds=0.5)
    assert settings.sqlite_pragmas["wal_autocheckpoint"] == 0
    path = tmp_path / "bg.db"
    db = Database.from_url(f"sqlite:///{path}", sqlite_pragmas=settings.sqlite_pragmas)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
    for _ in range(3):  # commits far past 1,000 WAL pages: none of them checkpointed
        with db.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", [("x" * 4000,) for _ in range(1000)])
    assert path.stat().st_size < 64 * 1024
    db.checkpoint("PASSIVE")  # what the runtime's periodic job runs
    assert path.stat().st_size > 10 * 1024 * 1024
    db.dispose()
    # the runtime of such a service runs that job; by default there is none
    runtime = ServiceRuntime(settings, tmp_path / "no-migrations")
    assert [job.interval for job in runtime.jobs if "checkpoint" in job.name] == [0.5]
    plain = ServiceRuntime(DemoSettings(data_dir=tmp_path), tmp_path / "no-migrations")
    assert not [job for job in plain.jobs if "checkpoint" in job.name]
    # and every runtime forgets old tracking records and idempotency keys hourly
    assert [(job.interval, job.run_at_start) for job in plain.jobs if "retention" in job.name] == [
        (3600, True)
    ]
    runtime.db.dispose()
    plain.db.dispose()


def test_retention_forgets_old_processed_events_and_idempotency_keys(
    db_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, insert, select

    from shared.db import Database, make_metadata, prune_platform_tables

    metadata = make_metadata()
    db = Database.from_url(db_url)
    metadata.create_all(db.engine)
    processed, keys = metadata.tables["processed_events"], metadata.tables["idempotency_keys"]
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    with db.engine.begin() as conn:
        conn.execute(
            insert(processed),
            [
                {"consumer": "g", "event_id": f"e{i}", "processed_at": now - timedelta(days=i)}
                for i in range(40)
            ],
        )
        conn.execute(
            insert(keys),
            [
                {
                    "key": f"k{i}",
                    "scope": "s",
                    "request_hash": "h",
                    "created_at": now - timedelta(hours=i),
                }
                for i in range(30)
            ],
        )
    deleted = prune_platform_tables(
        db,
        processed_before=now - timedelta(days=30),
        idempotency_before=now - timedelta(hours=24),
        chunk=4,  # several chunks, the last one partial
    )
    assert deleted == {"processed_events": 9, "idempotency_keys": 5}
    with db.engine.connect() as conn:
        left = sorted(conn.scalars(select(processed.c.event_id)), key=lambda e: int(e[1:]))
        assert left == [f"e{i}" for i in range(31)]  # 30 days old: kept (strictly before)
        assert conn.scalar(select(func.count()).select_from(keys)) == 25
    assert prune_platform_tables(
        db, processed_before=now - timedelta(days=30), idempotency_before=now - timedelta(hours=24)
    ) == {"processed_events": 0, "idempotency_keys": 0}
    db.dispose()


# -- the bulk kit

_KIT = MetaData()
_SAMPLES = Table(
    "kit_samples",
    _KIT,
    Column("id", String(20), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("tags", JSON, nullable=True),
    Column("flag", Boolean, nullable=True),
    Column("blob", LargeBinary, nullable=True),
)
_COLUMNS = ("id", "at", "tags", "flag", "blob")
SHANGHAI = timezone(timedelta(hours=8))


def _core_rows(db: Database) -> dict[str, tuple]:
    with db.sessions() as session:
        return {row[0]: tuple(row) for row in session.execute(select(_SAMPLES)).all()}


def test_driver_level_writes_read_back_as_sqlalchemys_own(db_url: str) -> None:
    """What executemany writes (datetimes of any zone, JSON, bools, bytes, NULLs) reads back
    through SQLAlchemy's types exactly as what a Core insert wrote: one encoding."""
    db = Database.from_url(db_url)
    _KIT.create_all(db.engine)
    moment = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    values = [
        ("utc", moment, ["a", "b"], True, b"\x00\x01"),
        ("shanghai", moment.astimezone(SHANGHAI), {"k": 1}, False, b""),
        ("nulls", None, None, None, None),
    ]
    with db.unit_of_work() as session:
        written = executemany(
            session, _SAMPLES, insert_sql(_SAMPLES, _COLUMNS), _COLUMNS, values, repeated=("at",)
        )
    assert written == 3
    kit = _core_rows(db)
    with db.unit_of_work() as session:
        session.execute(_SAMPLES.delete())
        session.execute(_SAMPLES.insert(), [dict(zip(_COLUMNS, v, strict=True)) for v in values])
    # the UTC instant SQLAlchemy stores for the zoned value (its own SQLite type drops the
    # zone; the kit never does)
    core = _core_rows(db)
    core["shanghai"] = (*core["shanghai"][:1], kit["shanghai"][1], *core["shanghai"][2:])
    assert kit == core
    assert ensure_aware(kit["shanghai"][1]) == moment
    assert kit["utc"][2:] == (["a", "b"], True, b"\x00\x01")
    with db.unit_of_work() as session:
        executemany(
            session,
            _SAMPLES,
            update_sql(_SAMPLES, ["tags"], "id"),
            ["tags", "id"],
            [([1], "utc"), ([2], "nulls")],
        )
        insert_many(session, _SAMPLES, [{"id": "dict", "at": moment, "tags": [], "flag": True}])
    rows = _core_rows(db)
    assert rows["utc"][2] == [1] and rows["nulls"][2] == [2]
    assert ensure_aware(rows["dict"][1]) == moment
    db.dispose()


def test_write_rows_inserts_and_updates_dict_rows_of_any_shape(db_url: str) -> None:
    """Rows with different keys each get their own statement; an update sets every key of
    its row but the key column, and leaves the other columns alone; None is SQL NULL."""
    db = Database.from_url(db_url)
    _KIT.create_all(db.engine)
    moment = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    with db.unit_of_work() as session:
        write_rows(
            session,
            _SAMPLES,
            [
                {"id": "full", "at": moment, "tags": ["a"], "flag": True, "blob": b"x"},
                {"id": "short", "tags": None},
                {"id": "full2", "at": None, "tags": {"k": 1}, "flag": False, "blob": None},
            ],
        )
        write_rows(session, _SAMPLES, [])  # nothing to write, no statement
    with db.unit_of_work() as session:
        write_rows(
            session,
            _SAMPLES,
            [{"id": "full", "tags": None, "flag": False}, {"id": "short", "at": moment}],
            key="id",
        )
    rows = _core_rows(db)
    assert rows["full"][1:] == (rows["full"][1], None, False, b"x")
    assert ensure_aware(rows["full"][1]) == moment
    assert rows["short"][2:] == (None, None, None) and ensure_aware(rows["short"][1]) == moment
    assert rows["full2"][1:] == (None, {"k": 1}, False, None)
    with db.sessions() as session:  # SQL NULL, not the JSON text null
        nulls = select_rows(session, "SELECT id FROM kit_samples WHERE tags IS NULL")
    assert sorted(r[0] for r in nulls) == ["full", "short"]
    db.dispose()


def test_select_in_reads_every_chunk_with_the_parameters_before_the_list(db_url: str) -> None:
    db = Database.from_url(db_url)
    _KIT.create_all(db.engine)
    moment = datetime(2026, 3, 1, tzinfo=UTC)
    with db.unit_of_work() as session:
        rows = [(f"id{n:03}", moment, None, n % 2 == 0, None) for n in range(25)]
        executemany(session, _SAMPLES, insert_sql(_SAMPLES, _COLUMNS), _COLUMNS, rows)
    wanted = [f"id{n:03}" for n in range(0, 30, 3)]  # id027 does not exist
    with db.sessions() as session:
        found = select_in(
            session,
            "SELECT id, at FROM kit_samples WHERE flag = {mark} AND id IN ({marks})",
            wanted,
            before=(True,),
            size=4,
        )
    assert sorted(row[0] for row in found) == ["id000", "id006", "id012", "id018", "id024"]
    assert all(isinstance(row, tuple) and read_datetime(row[1]) == moment for row in found)
    db.dispose()


def test_sqlite_datetime_is_the_text_sqlalchemy_stores_for_the_utc_instant() -> None:
    moment = datetime(2026, 12, 5, 23, 59, 59, 5, tzinfo=UTC)
    assert sqlite_datetime(moment) == "2026-12-05 23:59:59.000005"
    assert sqlite_datetime(moment.astimezone(SHANGHAI)) == "2026-12-05 23:59:59.000005"
    assert sqlite_datetime(moment.replace(tzinfo=None)) == "2026-12-05 23:59:59.000005"
    assert sqlite_datetime(moment.replace(microsecond=0)) == "2026-12-05 23:59:59.000000"
    assert read_datetime("2026-12-05 23:59:59.000005") == moment
    assert read_datetime(moment.replace(tzinfo=None)) == moment
    assert read_datetime(None) is None


def test_epoch_microseconds_sql_reads_stored_instants_exactly(db_url: str) -> None:
    """The one SQL form of a stored instant as a number: exact to the microsecond on both
    databases, at a second's end and a day's start too (julianday alone is ~1e-5 s off)."""
    from shared.db import epoch_microseconds_sql, select_rows

    db = Database.from_url(db_url)
    _KIT.create_all(db.engine)
    midnight = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)
    moments = [
        midnight,
        midnight - timedelta(microseconds=1),
        midnight - timedelta(microseconds=300),
        datetime(1970, 1, 2, tzinfo=UTC),
        datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=SHANGHAI),
    ]
    values = [(f"m{i}", m, None, None, None) for i, m in enumerate(moments)]
    values.append(("none", None, None, None, None))
    with db.unit_of_work() as session:
        executemany(session, _SAMPLES, insert_sql(_SAMPLES, _COLUMNS), _COLUMNS, values)
        expression = epoch_microseconds_sql("at", db.engine.dialect.name)
        found = dict(select_rows(session, f"SELECT id, {expression} FROM {_SAMPLES.name}"))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for i, moment in enumerate(moments):
        assert found[f"m{i}"] == (moment - epoch) // timedelta(microseconds=1), moment
    assert found["none"] is None
    db.dispose()
