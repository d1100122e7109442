from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from services.profile.app import MIGRATIONS
from services.profile.models import Base
from shared.db import run_migrations


def test_migrations_match_the_models(db_url: str) -> None:
    run_migrations(MIGRATIONS, db_url)
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
