"""trigger skips: occurrences a running campaign did not enter, by reason

Revision ID: c3e8a1f4b2d6
Revises: a2fbeafa88c1
Create Date: 2026-12-05 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c3e8a1f4b2d6'
down_revision: str | None = 'a2fbeafa88c1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'trigger_skips',
        sa.Column('campaign_id', sa.String(length=64), nullable=False),
        sa.Column('occurrence_hash', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.String(length=30), nullable=False),
        sa.Column('skipped_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('campaign_id', 'occurrence_hash', name=op.f('pk_trigger_skips')),
    )


def downgrade() -> None:
    op.drop_table('trigger_skips')
