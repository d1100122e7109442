"""The platform tables (:data:`shared.db.PLATFORM_TABLES`) in every service's migrations.

A new service's first revision calls :func:`create_platform_schema` (its downgrade
:func:`drop_platform_schema`): the platform tables as they are today, in one step.

The four first services made them in steps, and those revisions stay as they are: each
first revision calls :func:`create_platform_tables` (its downgrade
:func:`drop_platform_tables`), and its ``platform retention indexes`` revision
:func:`create_platform_retention_indexes` (:func:`drop_platform_retention_indexes`).
What these emit is those revisions' schema, frozen: a later change to the platform
tables is a new function here, called from a new revision of every existing service and
added to :func:`create_platform_schema`, never an edit of these.
``tests/shared/test_platform_migrations.py`` checks that :func:`create_platform_schema`
creates exactly :data:`~shared.db.PLATFORM_TABLES`, and ``test_migration_chains.py`` that
every service's migrations do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def create_platform_tables() -> None:
    """``idempotency_keys``, ``kv_state``, ``outbox`` and ``processed_events``."""
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", "scope", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "kv_state",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_kv_state")),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_unpublished", ["published_at", "id"], unique=False)
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_processed_events")),
    )


def drop_platform_tables() -> None:
    """Undo :func:`create_platform_tables`."""
    op.drop_table("processed_events")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_unpublished")
    op.drop_table("outbox")
    op.drop_table("kv_state")
    op.drop_table("idempotency_keys")


def create_platform_retention_indexes() -> None:
    """The time indexes the retention of tracking records and idempotency keys deletes by."""
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.create_index("ix_processed_events_processed_at", ["processed_at"], unique=False)


def drop_platform_retention_indexes() -> None:
    """Undo :func:`create_platform_retention_indexes`."""
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_index("ix_processed_events_processed_at")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created_at")


def create_platform_schema() -> None:
    """The complete platform schema of today, for a new service's first revision: the
    tables and every index the models declare (the steps the first services took)."""
    create_platform_tables()
    create_platform_retention_indexes()


def drop_platform_schema() -> None:
    """Undo :func:`create_platform_schema`."""
    drop_platform_retention_indexes()
    drop_platform_tables()
