"""Fixtures of the profile tests: settings and migrated databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.profile.app import MIGRATIONS, create_app
from services.profile.config import Settings
from shared.db import Database, run_migrations
from tests.conftest import ADMIN_KEY, api_client

#: API keys of the test clients beside the admin key
API_KEYS = {
    "reader-key": ["profile:read"],
    "pii-key": ["profile:read", "pii:read"],
    "writer-key": ["profile:*"],
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated profile database, on SQLite and on PostgreSQL."""
    run_migrations(MIGRATIONS, db_url)
    database = Database.from_url(db_url)
    yield database
    database.dispose()


@contextmanager
def profile_api(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The profile API over a migrated database, without broker or consumer (published
    events wait in the outbox): the admin key and :data:`API_KEYS`."""
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=database_url,
        api_key=ADMIN_KEY,
        api_keys=API_KEYS,
        run_consumer=False,
    )
    with api_client(create_app(settings, start_runtime=False), migrate=True) as test_client:
        yield test_client


@pytest.fixture
def client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """:func:`profile_api` on SQLite and on PostgreSQL."""
    with profile_api(tmp_path, db_url) as test_client:
        yield test_client
