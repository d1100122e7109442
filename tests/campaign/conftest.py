"""Fixtures for the campaign tests: a migrated database on each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.campaign.app import MIGRATIONS
from shared.db import Database, run_migrations


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
