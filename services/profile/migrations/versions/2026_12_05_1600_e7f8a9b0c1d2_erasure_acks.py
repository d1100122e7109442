"""erasure acks: which services applied each erasure

Revision ID: e7f8a9b0c1d2
Revises: d6e7f8a9b0c1
Create Date: 2026-12-05 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7f8a9b0c1d2"
down_revision: str | None = "d6e7f8a9b0c1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_acks",
        sa.Column("erasure_id", sa.String(length=36), nullable=False),
        sa.Column("service", sa.String(length=20), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("erasure_id", "service", "part", name=op.f("pk_erasure_acks")),
    )
    op.create_index(
        "ix_erasure_acks_pending", "erasure_acks", ["applied_at", "requested_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_erasure_acks_pending", table_name="erasure_acks")
    op.drop_table("erasure_acks")
