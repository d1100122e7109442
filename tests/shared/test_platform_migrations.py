"""The shared migration helper creates exactly the platform tables of shared.db."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Engine, create_engine, inspect

from shared.db import PLATFORM_TABLES, make_metadata
from shared.platform_migrations import (
    create_platform_retention_indexes,
    create_platform_schema,
    create_platform_tables,
    drop_platform_retention_indexes,
    drop_platform_schema,
    drop_platform_tables,
)


def platform_diffs(engine: Engine) -> list[Any]:
    """What differs between the database's platform tables and the models' (the services'
    metadata: naming convention and platform tables alone)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, make_metadata()))


def test_a_new_services_first_revision_gets_the_whole_platform_schema(db_url: str) -> None:
    """What docs/architecture.md tells a new service's first revision to call: the tables
    with every index the models declare, in one step (and back to nothing)."""
    engine = create_engine(db_url)
    try:
        with (
            engine.begin() as connection,
            Operations.context(MigrationContext.configure(connection)),
        ):
            create_platform_schema()
        assert platform_diffs(engine) == []
        with (
            engine.begin() as connection,
            Operations.context(MigrationContext.configure(connection)),
        ):
            drop_platform_schema()
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_the_first_services_steps_create_the_platform_tables_of_the_models_and_drop_them(
    db_url: str,
) -> None:
    engine = create_engine(db_url)
    try:
        with (
            engine.begin() as connection,
            Operations.context(MigrationContext.configure(connection)),
        ):
            create_platform_tables()
        # the tables alone lack the retention indexes: the diff a first revision that
        # called only create_platform_tables() would leave
        missing = {d[1].name for d in platform_diffs(engine) if d[0] == "add_index"}
        assert missing == {"ix_idempotency_keys_created_at", "ix_processed_events_processed_at"}
        with (
            engine.begin() as connection,
            Operations.context(MigrationContext.configure(connection)),
        ):
            create_platform_retention_indexes()
        assert platform_diffs(engine) == []
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
