"""deleted segment ids: a deleted segment's id is not handed out again

Revision ID: e7a3c9d1b5f2
Revises: d5f1a2b3c4e6
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'e7a3c9d1b5f2'
down_revision: str | None = 'd5f1a2b3c4e6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'deleted_segment_ids',
        sa.Column('segment_id', sa.String(length=100), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('segment_id', name=op.f('pk_deleted_segment_ids')),
    )


def downgrade() -> None:
    op.drop_table('deleted_segment_ids')
