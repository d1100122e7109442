from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import JSON, Boolean, DateTime, Integer, column, table, text

from services.campaign.app import MIGRATIONS
from services.campaign.models import AudienceMember, Base
from shared.db import Database, run_migrations
from shared.erasure import tombstone_key
from tests.campaign.factories import NOW, feed, policy_event, segment_event
from tests.conftest import columns_of, downgrade


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


BEFORE_HASHED_TOMBSTONES = "12911f6fa27e"


def _old_rows() -> list[tuple[Any, list[dict[str, Any]]]]:
    """An erased customer (and a bystander) as the revision before tombstones kept them."""
    at = {"type_": DateTime(timezone=True)}
    audience = table(
        "audience",
        column("customer_id"),
        column("segments", JSON),
        column("tags", JSON),
        column("erased", Boolean),
        column("updated_at", **at),
    )
    orders = table(
        "customer_orders",
        *(column(c) for c in ("order_id", "customer_id", "status", "currency")),
        column("valid", Boolean),
        column("created_at", **at),
        column("paid_at", **at),
        column("version_at", **at),
        column("status_rank", Integer),
        column("net_amount_e4", Integer),
    )
    entries = table(
        "entries",
        *(column(c) for c in ("campaign_id", "customer_id", "outcome", "message_id")),
        column("entry_no", Integer),
        column("run_no", Integer),
        column("entered_at", **at),
    )
    receipts = table(
        "receipts",
        *(column(c) for c in ("message_id", "status", "customer_id")),
        column("at", **at),
    )
    aliases = table(
        "customer_aliases", *(column(c) for c in ("merged_id", "survivor_id", "merge_id"))
    )
    runs = table(
        "launch_runs",
        column("campaign_id"),
        column("run_no", Integer),
        column("started_at", **at),
        column("cursor"),
    )
    member = {"segments": [], "tags": [], "updated_at": NOW}
    order = {
        "status": "paid",
        "currency": "CNY",
        "valid": True,
        "created_at": NOW,
        "paid_at": NOW,
        "version_at": NOW,
        "status_rank": 1,
        "net_amount_e4": 1_000_000,
    }
    entry = {"campaign_id": "cmp", "outcome": "sent", "entry_no": 0, "run_no": 1, "entered_at": NOW}
    return [
        (
            audience,
            [
                {**member, "customer_id": "tb_lisi", "erased": False},
                {**member, "customer_id": "tb_zhangsan88", "erased": True},
            ],
        ),
        (
            orders,
            [
                {**order, "order_id": "o-1", "customer_id": "tb_zhangsan88"},
                {**order, "order_id": "o-2", "customer_id": "tb_lisi"},
            ],
        ),
        (
            entries,
            [
                {**entry, "customer_id": "tb_zhangsan88", "message_id": "m-1"},
                {**entry, "customer_id": "tb_lisi", "message_id": "m-2"},
            ],
        ),
        (
            receipts,
            [
                {
                    "message_id": "m-1",
                    "status": "delivered",
                    "customer_id": "tb_zhangsan88",
                    "at": NOW,
                }
            ],
        ),
        (
            aliases,
            [{"merged_id": "tb_zhangsan88_old", "survivor_id": "tb_zhangsan88", "merge_id": "m"}],
        ),
        (runs, [{"campaign_id": "cmp", "run_no": 1, "started_at": NOW, "cursor": "tb_zhangsan88"}]),
    ]


def test_an_erased_audience_row_becomes_a_tombstone_that_still_blocks_the_customer(
    db_url: str,
) -> None:
    run_migrations(MIGRATIONS, db_url, BEFORE_HASHED_TOMBSTONES)
    database = Database.from_url(db_url)
    try:
        with database.engine.begin() as connection:
            for old_table, rows in _old_rows():
                connection.execute(old_table.insert(), rows)
        run_migrations(MIGRATIONS, db_url)
        key = tombstone_key("tb_zhangsan88")
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT customer_hash FROM erased_customers")).all() == [
                (key,)
            ]
            assert connection.execute(text("SELECT customer_id FROM audience")).all() == [
                ("tb_lisi",)
            ]
            owners = "SELECT customer_id FROM {} ORDER BY customer_id"
            # the reports' rows are kept under the digest; the bystander's stay as they were
            for name in ("customer_orders", "entries"):
                assert connection.execute(text(owners.format(name))).scalars().all() == sorted(
                    [key, "tb_lisi"]
                )
            assert connection.execute(text(owners.format("receipts"))).scalars().all() == [key]
            assert connection.execute(text("SELECT count(*) FROM customer_aliases")).scalar() == 0
            assert connection.execute(text("SELECT cursor FROM launch_runs")).scalar() == "tb_lisi"
        # events about the erased customer, replayed after the upgrade, bring nothing back
        feed(
            database,
            [segment_event("tb_zhangsan88", segments=["s1"]), policy_event("tb_zhangsan88")],
        )
        with database.sessions() as session:
            assert session.get(AudienceMember, "tb_zhangsan88") is None
        # the digests cannot be turned back into ids: the downgrade refuses
        with pytest.raises(RuntimeError, match="cannot be"):
            _downgrade(db_url, BEFORE_HASHED_TOMBSTONES)
    finally:
        database.dispose()


def test_the_downgrade_restores_the_erased_flag_when_no_customer_was_erased(
    db_url: str, sqlite_url: str
) -> None:
    run_migrations(MIGRATIONS, db_url)
    _downgrade(db_url, BEFORE_HASHED_TOMBSTONES)
    reached = columns_of(db_url)
    assert "erased" in reached["audience"] and "erased_customers" not in reached
    # the tables and columns that upgrading a new database to that revision makes
    run_migrations(MIGRATIONS, sqlite_url, BEFORE_HASHED_TOMBSTONES)
    assert reached == columns_of(sqlite_url)
    database = Database.from_url(db_url)
    try:
        with database.engine.begin() as connection:
            audience, rows = _old_rows()[0]
            connection.execute(audience.insert(), rows)
    finally:
        database.dispose()
    run_migrations(MIGRATIONS, db_url)


def _downgrade(url: str, revision: str) -> None:
    downgrade(MIGRATIONS, url, revision)
