"""Fixtures every test tier shares: one embedded broker per session, fresh topics per test,
databases on SQLite and PostgreSQL; the one way to open a service's API in a test
(:func:`api_client`) and to read what it queued in its outbox (:func:`outbox_events`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, select

from devtools.broker import EmbeddedBroker
from devtools.testing import postgres_available, postgres_database, unique
from shared.db import PLATFORM_TABLES, Database
from shared.events import decode_event
from shared.runtime import ServiceRuntime

ADMIN_KEY = "test-admin-key"


#: the test folders whose files start real processes or wait out broker faults: collected
#: first, their files alternating, so that `make test`'s two workers (pytest-xdist, by
#: file) run one e2e system and one fault case at a time, then finish on the short files
#: (not one worker running the long ones alone at the end)
SLOW_FIRST = ("e2e", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    files: dict[str, dict[Path, list[pytest.Item]]] = {folder: {} for folder in SLOW_FIRST}
    rest: list[pytest.Item] = []
    for item in items:
        folder = next((f for f in SLOW_FIRST if f in item.path.parts), None)
        if folder is None:
            rest.append(item)
        else:
            files[folder].setdefault(item.path, []).append(item)
    slow: list[pytest.Item] = []
    for group in itertools.zip_longest(*(list(f.values()) for f in files.values())):
        for file_items in group:
            slow.extend(file_items or ())
    items[:] = [*slow, *rest]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One Tansu broker on a free loopback port for the whole test session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def namespace() -> str:
    """A topic prefix unique to this test: its topics are fresh."""
    return unique("ns") + "."


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not postgres_available():
        if os.environ.get("CRM_TEST_ALLOW_NO_POSTGRES") == "1":
            pytest.skip("PostgreSQL not running (CRM_TEST_ALLOW_NO_POSTGRES=1)")
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432; start it or see README")
    with postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


def service_env(
    *,
    broker: EmbeddedBroker,
    namespace: str,
    data_dir: Path,
    prefix: str,
    database_url: str | None = None,
) -> dict[str, str]:
    """Environment variables that point one service at the test broker and a test database."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "CRM_TOPIC_NAMESPACE": namespace,
        "CRM_DATA_DIR": str(data_dir),
        "CRM_API_KEY": ADMIN_KEY,
        f"{prefix}_CONSUMER_GROUP": unique(f"{prefix.lower()}-group"),
    }
    if database_url:
        env[f"{prefix}_DATABASE_URL"] = database_url
    return env


@contextmanager
def api_client(
    app: FastAPI,
    *,
    migrate: bool = False,
    keep_outbox: bool = False,
    lifespan: bool = True,
    raise_server_exceptions: bool = True,
) -> Iterator[TestClient]:
    """A TestClient over a service's app, its database disposed afterwards.

    ``migrate``: migrate the database first (an app made with ``start_runtime=False``);
    ``keep_outbox``: stop the outbox relay once started, so the test reads what was queued;
    ``lifespan=False``: serve without running the app's startup (nothing starts);
    ``raise_server_exceptions=False``: an unhandled error answers 500 instead of raising.
    """
    runtime: ServiceRuntime = app.state.runtime
    if migrate:
        runtime.migrate()
    client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
    try:
        if not lifespan:
            yield client
            return
        with client:
            if keep_outbox:
                runtime.relay.stop()
            yield client
    finally:
        runtime.db.dispose()


def runtime_of(client: TestClient) -> ServiceRuntime:
    """The service runtime behind a client of :func:`api_client`."""
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def outbox_values(source: Database | TestClient, topic: str | None = None) -> list[bytes]:
    """The values queued in a service's outbox (of one topic, or all), oldest first."""
    db = source if isinstance(source, Database) else runtime_of(source).db
    outbox = PLATFORM_TABLES.tables["outbox"]
    query = select(outbox.c.value).order_by(outbox.c.id)
    if topic is not None:
        query = query.where(outbox.c.topic == topic)
    with db.sessions() as session:
        return [bytes(value) for value in session.execute(query).scalars()]


def outbox_events(source: Database | TestClient, topic: str | None = None) -> list[Any]:
    """The events queued in a service's outbox (of one topic, or all), oldest first."""
    return [decode_event(value) for value in outbox_values(source, topic)]


def alembic_config(migrations: Path, url: str) -> Config:
    """The Alembic configuration of a service's migrations against ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def downgrade(migrations: Path, url: str, revision: str) -> None:
    """Migrate a service's database down to ``revision``."""
    command.downgrade(alembic_config(migrations, url), revision)


def schema_of(url: str) -> dict[str, dict[str, list[str]]]:
    """Each table of a database (but Alembic's own) with its column and index names, sorted
    (a downgrade that adds a column back puts it last)."""
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        return {
            name: {
                "columns": sorted(c["name"] for c in inspector.get_columns(name)),
                "indexes": sorted(str(i["name"]) for i in inspector.get_indexes(name)),
            }
            for name in sorted(inspector.get_table_names())
            if name != "alembic_version"
        }
    finally:
        engine.dispose()


def columns_of(url: str) -> dict[str, list[str]]:
    """Each table of a database (but Alembic's own) with its column names, sorted."""
    return {name: table["columns"] for name, table in schema_of(url).items()}
