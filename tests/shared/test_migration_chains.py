"""Every service's migrations, one revision at a time: each downgrade reaches exactly the
schema (tables, columns, indexes) its revision's upgrade made, down to an empty database."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from services.campaign.app import MIGRATIONS as CAMPAIGN
from services.ingest.app import MIGRATIONS as INGEST
from services.profile.app import MIGRATIONS as PROFILE
from services.segment.app import MIGRATIONS as SEGMENT
from tests.conftest import alembic_config, schema_of


@pytest.mark.parametrize(
    "migrations", [INGEST, PROFILE, SEGMENT, CAMPAIGN], ids=lambda m: m.parent.name
)
def test_each_downgrade_reaches_the_schema_of_the_revision_below(
    migrations: Path, db_url: str
) -> None:
    cfg = alembic_config(migrations, db_url)
    revisions = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()][::-1]
    reached: dict[str, dict[str, dict[str, list[str]]]] = {}
    for revision in revisions:
        command.upgrade(cfg, revision)
        reached[revision] = schema_of(db_url)
    assert reached[revisions[0]], "the first revision creates tables"
    for below in reversed(revisions[:-1]):
        command.downgrade(cfg, below)
        assert schema_of(db_url) == reached[below], f"downgraded to {below}"
    command.downgrade(cfg, "base")
    assert schema_of(db_url) == {}
