"""The shared migration helper creates exactly the platform tables of shared.db."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import create_engine, inspect

from shared.db import PLATFORM_TABLES, make_metadata
from shared.platform_migrations import (
    create_platform_retention_indexes,
    create_platform_tables,
    drop_platform_retention_indexes,
    drop_platform_tables,
)


def test_the_helper_creates_the_platform_tables_of_the_models_and_drops_them(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with (
            engine.begin() as connection,
            Operations.context(MigrationContext.configure(connection)),
        ):
            create_platform_tables()
            create_platform_retention_indexes()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            # the services' metadata: naming convention and platform tables alone
            assert compare_metadata(context, make_metadata()) == []
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == set(PLATFORM_TABLES.tables)
        for name, table in PLATFORM_TABLES.tables.items():
            assert [c["name"] for c in inspector.get_columns(name)] == list(table.columns.keys())
            assert {i["name"] for i in inspector.get_indexes(name)} == {
                i.name for i in table.indexes
            }
            assert inspector.get_pk_constraint(name)["name"] == f"pk_{name}"
        with (
            engine.begin() as connection,
            Operations.context(MigrationContext.configure(connection)),
        ):
            drop_platform_retention_indexes()
            assert not inspect(connection).get_indexes("processed_events")
            drop_platform_tables()
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
