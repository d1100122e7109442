from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event

from services.profile.config import Settings
from services.profile.consumer import CONSUMED_TOPICS, build_consumers
from services.profile.routes import router
from shared.api import build_app
from shared.config import ServiceSettings
from shared.db import Database
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def tune_database(db: Database, settings: Settings) -> None:
    """SQLite tuned for the consumer: every poll batch reads and rewrites thousands of
    profile documents; with the default 2 MiB page cache the consumer ran 1.5x slower at
    50,000 customers (bench/bench_profile.py)."""
    if not db.is_sqlite:
        return

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA cache_size=-{settings.sqlite_cache_mib * 1024}")
        # fewer, larger checkpoints: a profile page rewritten by several batches reaches
        # the main file (with its fsync) once per checkpoint instead of once per batch
        cursor.execute(f"PRAGMA wal_autocheckpoint={settings.sqlite_wal_autocheckpoint_pages}")
        cursor.close()

    event.listen(db.engine, "connect", pragmas)


def create_runtime(settings: ServiceSettings | None = None) -> ServiceRuntime:
    settings = settings or Settings()
    runtime = ServiceRuntime(
        settings,
        MIGRATIONS,
        consumer_factory=build_consumers,
        consumed_topics=CONSUMED_TOPICS,
    )
    if isinstance(settings, Settings):
        tune_database(runtime.db, settings)
    return runtime


def create_app(settings: ServiceSettings | None = None, *, start_runtime: bool = True) -> FastAPI:
    """The profile API; ``start_runtime=False`` serves without broker threads (tests)."""
    runtime = create_runtime(settings)
    return build_app(
        runtime=runtime,
        title="CRM profile",
        description="One unified profile per customer (basic, subjective and transaction "
        "facets with provenance), identity resolution, tags, contact policy, search, "
        "export and erasure. See docs/profile.md.",
        routers=[router],
        start_runtime=start_runtime,
    )
