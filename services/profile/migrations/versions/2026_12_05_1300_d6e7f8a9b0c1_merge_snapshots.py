"""merge snapshots: what an unmerge gives back

Revision ID: d6e7f8a9b0c1
Revises: c5d6e7f8a9b0
Create Date: 2026-12-05 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d6e7f8a9b0c1"
down_revision: str | None = "c5d6e7f8a9b0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merge_snapshots",
        sa.Column("merge_id", sa.String(length=36), nullable=False),
        sa.Column("profile_id", sa.String(length=200), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("customer_ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("merge_id", "profile_id", name=op.f("pk_merge_snapshots")),
    )


def downgrade() -> None:
    op.drop_table("merge_snapshots")
