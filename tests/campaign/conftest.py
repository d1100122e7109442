"""Fixtures for the campaign tests: a migrated database on each backend, an API client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.campaign.app import MIGRATIONS, create_app
from shared.db import Database, run_migrations
from tests.campaign.factories import settings
from tests.conftest import ADMIN_KEY, api_client


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated campaign database on SQLite, then on PostgreSQL."""
    run_migrations(MIGRATIONS, db_url)
    database = Database.from_url(db_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    run_migrations(MIGRATIONS, sqlite_url)
    database = Database.from_url(sqlite_url)
    yield database
    database.dispose()


@pytest.fixture
def client(broker, namespace: str, tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    # the session's broker: the runtime's background topic creation finishes at once
    cfg = settings(
        tmp_path,
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        database_url=sqlite_url,
        api_key=ADMIN_KEY,
        api_keys={"reader-key": ["campaign:read"]},
        launch_chunk_size=4,
    )
    with api_client(create_app(cfg)) as test_client:
        yield test_client
