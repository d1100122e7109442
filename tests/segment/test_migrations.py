from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import DateTime, String, column, create_engine, table, text

from services.segment import scoring_context
from services.segment.app import MIGRATIONS
from services.segment.models import Base, CutPointSet
from services.segment.policy import DEFAULT_POLICY
from shared.db import Database, run_migrations
from shared.erasure import tombstone_key
from shared.events import ensure_aware
from tests.conftest import columns_of, downgrade
from tests.segment.helpers import NOW, order, recorded
from tests.segment.test_paths import feed, stored_state


def test_migrations_match_the_models(db_url: str) -> None:
    run_migrations(MIGRATIONS, db_url)
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def _downgrade(url: str, revision: str) -> None:
    downgrade(MIGRATIONS, url, revision)


BEFORE_HASHED_TOMBSTONES = "16921264ff81"
#: the tombstone table before that revision (a customer id in clear)
_TOMBSTONE = (
    table(
        "erased_customers",
        column("customer_id", String),
        column("erasure_id", String),
        column("requested_at", DateTime(timezone=True)),
        column("erased_at", DateTime(timezone=True)),
    )
    .insert()
    .values(requested_at=NOW, erased_at=NOW)
)


def test_a_clear_text_tombstone_still_blocks_the_customer_after_the_upgrade(db_url: str) -> None:
    run_migrations(MIGRATIONS, db_url, BEFORE_HASHED_TOMBSTONES)
    db = Database.from_url(db_url)
    try:
        with db.engine.begin() as connection:
            connection.execute(_TOMBSTONE.values(customer_id="tb_zhangsan88", erasure_id="e1"))
            connection.execute(
                text(
                    "INSERT INTO customer_aliases (merged_id, survivor_id, merge_id) VALUES"
                    " ('tb_zhangsan88_old', 'tb_zhangsan88', 'm1'), ('tb_b', 'tb_a', 'm2')"
                )
            )
        run_migrations(MIGRATIONS, db_url)
        with db.engine.connect() as connection:
            assert connection.execute(
                text("SELECT customer_hash FROM erased_customers")
            ).scalars().all() == [tombstone_key("tb_zhangsan88")]
            # the erased customer's alias went with it; another customer's stays
            assert connection.execute(
                text("SELECT merged_id, survivor_id FROM customer_aliases")
            ).all() == [("tb_b", "tb_a")]
        # an order the erased customer placed before the erasure, delivered again
        feed(db, [recorded(order("o1", "tb_zhangsan88", days_ago=3))])
        feed(db, [recorded(order("o2", "tb_other", days_ago=3))])
        assert stored_state(db)["customer_id"].tolist() == ["tb_other"]
        # the hashed tombstones cannot be turned back into ids: the downgrade refuses
        with pytest.raises(RuntimeError, match="cannot be restored"):
            _downgrade(db_url, BEFORE_HASHED_TOMBSTONES)
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM erased_customers")).scalar() == 1
    finally:
        db.dispose()


def test_the_downgrade_restores_the_schema_when_no_customer_was_erased(
    db_url: str, sqlite_url: str
) -> None:
    run_migrations(MIGRATIONS, db_url)
    _downgrade(db_url, BEFORE_HASHED_TOMBSTONES)
    reached = columns_of(db_url)
    assert reached["erased_customers"] == ["customer_id", "erased_at", "erasure_id", "requested_at"]
    # the tables and columns that upgrading a new database to that revision makes
    run_migrations(MIGRATIONS, sqlite_url, BEFORE_HASHED_TOMBSTONES)
    assert reached == columns_of(sqlite_url)
    db = Database.from_url(db_url)
    try:
        with db.engine.begin() as connection:
            connection.execute(_TOMBSTONE.values(customer_id="c1", erasure_id="e1"))
    finally:
        db.dispose()
    run_migrations(MIGRATIONS, db_url)


BEFORE_INITIAL_POLICY = "e7a3c9d1b5f2"


def test_the_initial_policy_version_is_stored_with_when_it_came_into_force(
    db_url: str,
) -> None:
    # a service that ran before: its first batch computed cut points 10 days before NOW
    run_migrations(MIGRATIONS, db_url, BEFORE_INITIAL_POLICY)
    db = Database.from_url(db_url)
    first_batch = NOW - timedelta(days=10)
    try:
        with db.unit_of_work() as session:
            for days in (0, 10):
                session.add(
                    CutPointSet(
                        policy_version=1,
                        as_of=first_batch + timedelta(days=days),
                        computed_at=first_batch + timedelta(days=days),
                        body={},
                    )
                )
        with db.unit_of_work() as session:
            assert scoring_context.current_policy(session)[2] is None  # only implied before
        run_migrations(MIGRATIONS, db_url)
        with db.unit_of_work() as session:
            version, policy, created_at = scoring_context.current_policy(session)
        assert (version, policy, created_at) == (1, DEFAULT_POLICY, first_batch)
        # a PUT adds version 2 and leaves version 1's time as it was
        with db.unit_of_work() as session:
            changed = DEFAULT_POLICY.model_copy(update={"window_days": 180})
            assert scoring_context.set_policy(session, changed, comment=None)[0] == 2
        with db.unit_of_work() as session:
            history = scoring_context.policy_history(session)
        assert (history[0].version, ensure_aware(history[0].created_at)) == (1, first_batch)
        assert ensure_aware(history[1].created_at) > first_batch
    finally:
        db.dispose()


def test_a_fresh_database_has_version_1_from_its_first_start(db_url: str) -> None:
    before = datetime.now(UTC)
    run_migrations(MIGRATIONS, db_url)
    db = Database.from_url(db_url)
    try:
        with db.unit_of_work() as session:
            created_at = scoring_context.current_policy(session)[2]
            history = scoring_context.policy_history(session)
    finally:
        db.dispose()
    assert created_at is not None and before <= created_at <= datetime.now(UTC)
    assert [(p.version, ensure_aware(p.created_at)) for p in history] == [(1, created_at)]


def test_a_version_1_stored_by_a_first_put_moves_back_to_the_first_batch(db_url: str) -> None:
    run_migrations(MIGRATIONS, db_url, BEFORE_INITIAL_POLICY)
    db = Database.from_url(db_url)
    first_batch = NOW - timedelta(days=10)
    try:
        with db.unit_of_work() as session:
            session.add(
                CutPointSet(policy_version=1, as_of=first_batch, computed_at=first_batch, body={})
            )
            # the old first PUT: version 1 and 2 stored together, milliseconds apart
            scoring_context.set_policy(
                session, DEFAULT_POLICY.model_copy(update={"window_days": 180}), comment=None
            )
        with db.unit_of_work() as session:
            put_at = ensure_aware(scoring_context.policy_history(session)[1].created_at)
        run_migrations(MIGRATIONS, db_url)
        with db.unit_of_work() as session:
            history = scoring_context.policy_history(session)
            assert [scoring_context.policy_created_at(p) for p in history] == [first_batch, put_at]
    finally:
        db.dispose()
