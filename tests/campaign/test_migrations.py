from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from services.campaign.app import MIGRATIONS
from services.campaign.models import Base
from shared.db import Database, run_migrations
from tests.campaign.factories import NOW


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == []


def test_entries_written_before_the_merge_migration_count(db_url: str) -> None:
    run_migrations(MIGRATIONS, db_url, "98c6a159a1f6")  # the initial schema
    database = Database.from_url(db_url)
    try:
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO entries (campaign_id, customer_id, entry_no, run_no, entered_at,"
                    " outcome) VALUES ('cmp', 'c1', 0, 1, :at, 'sent')"
                ),
                {"at": NOW},
            )
        run_migrations(MIGRATIONS, db_url)
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT counted FROM entries")).scalar_one()
    finally:
        database.dispose()
