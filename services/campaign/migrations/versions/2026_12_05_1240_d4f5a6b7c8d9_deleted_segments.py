"""deleted segments: campaigns aimed at one no longer launch

Revision ID: d4f5a6b7c8d9
Revises: c3e8a1f4b2d6
Create Date: 2026-12-05 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d4f5a6b7c8d9"
down_revision: str | None = "c3e8a1f4b2d6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deleted_segments",
        sa.Column("segment_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", name=op.f("pk_deleted_segments")),
    )


def downgrade() -> None:
    op.drop_table("deleted_segments")
