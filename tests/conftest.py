"""Fixtures every test tier shares: one embedded broker per session, fresh topics per test,
and databases on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.broker import EmbeddedBroker
from shared.testing import postgres_available, postgres_database, unique

ADMIN_KEY = "test-admin-key"


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
