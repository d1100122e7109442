"""Fixtures of the profile tests: settings and migrated databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.profile.app import MIGRATIONS
from services.profile.config import Settings
from shared.db import Database, run_migrations


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
