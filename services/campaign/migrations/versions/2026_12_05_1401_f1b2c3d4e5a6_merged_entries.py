"""merged entries: what a merge re-keyed, so that an unmerge can key it back

Revision ID: f1b2c3d4e5a6
Revises: e7b1c2d3f4a5
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'f1b2c3d4e5a6'
down_revision: str | None = 'e7b1c2d3f4a5'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'merged_entries',
        sa.Column('merge_id', sa.String(length=200), nullable=False),
        sa.Column('entry_id', sa.BigInteger(), nullable=False),
        sa.Column('customer_id', sa.String(length=200), nullable=False),
        sa.Column('entry_no', sa.Integer(), nullable=False),
        sa.Column('counted', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('merge_id', 'entry_id', name=op.f('pk_merged_entries')),
    )


def downgrade() -> None:
    op.drop_table('merged_entries')
