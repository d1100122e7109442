"""Campaign's section of a subject-access export reads like the API: money as amounts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.campaign.subject_export import export_section
from shared.db import Database
from tests.campaign.factories import consume, policy_event, segment_event


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_the_section_gives_money_as_amounts_not_storage_units(db: Database) -> None:
    consume(db, [segment_event("c1", segments=["s1"]), policy_event("c1")])
    with db.sessions() as session:
        section = export_section(session, ["c1"])
    [row] = section["audience"]
    assert not [k for k in _keys(section) if k.endswith("_e4")]
    assert Decimal(row["monetary"]) == Decimal("500")  # 5 x 100.00, not 5,000,000
