"""shared.db: engines and their SQLite tuning."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict
from sqlalchemy import text

from shared.config import ServiceSettings
from shared.db import make_engine


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
