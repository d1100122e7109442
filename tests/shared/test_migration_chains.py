"""Every service's migrations, one revision at a time: each downgrade reaches exactly the
schema (tables, columns, indexes) its revision's upgrade made, down to an empty database;
at head, the platform tables are exactly the models' (``shared.db.PLATFORM_TABLES``)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from shared import manifest
from shared.db import PLATFORM_TABLES, make_metadata
from tests.conftest import alembic_config, schema_of


def platform_diffs(db_url: str) -> list[Any]:
    """How the database's platform tables differ from the models' (its own tables aside)."""

    def platform_only(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return True
        table = name if type_ == "table" else parent_names.get("table_name")
        return table in PLATFORM_TABLES.tables

    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": platform_only}
            )
            return list(compare_metadata(context, make_metadata()))
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", manifest.NAMES)
def test_each_downgrade_reaches_the_schema_of_the_revision_below(name: str, db_url: str) -> None:
    migrations = importlib.import_module(f"services.{name}.app").MIGRATIONS
    cfg = alembic_config(migrations, db_url)
    revisions = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()][::-1]
    reached: dict[str, dict[str, dict[str, list[str]]]] = {}
    for revision in revisions:
        command.upgrade(cfg, revision)
        reached[revision] = schema_of(db_url)
    assert reached[revisions[0]], "the first revision creates tables"
    assert platform_diffs(db_url) == [], f"{name}'s migrations and the platform tables differ"
    for below in reversed(revisions[:-1]):
        command.downgrade(cfg, below)
        assert schema_of(db_url) == reached[below], f"downgraded to {below}"
    command.downgrade(cfg, "base")
    assert schema_of(db_url) == {}
