"""subject exports across the services

Revision ID: c5d6e7f8a9b0
Revises: b3c1d2e4f5a6
Create Date: 2026-12-05 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c5d6e7f8a9b0"
down_revision: str | None = "b3c1d2e4f5a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subject_exports",
        sa.Column("export_id", sa.String(length=36), nullable=False),
        sa.Column("profile_id", sa.String(length=200), nullable=False),
        sa.Column("customer_ids", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("sections", sa.Text(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("export_id", name=op.f("pk_subject_exports")),
    )
    with op.batch_alter_table("subject_exports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subject_exports_profile_id"), ["profile_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("subject_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_exports_profile_id"))
    op.drop_table("subject_exports")
