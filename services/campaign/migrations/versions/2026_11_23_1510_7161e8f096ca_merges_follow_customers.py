"""merges follow customers: customer aliases, entries folded by a merge

Revision ID: 7161e8f096ca
Revises: 98c6a159a1f6
Create Date: 2026-11-23 15:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '7161e8f096ca'
down_revision: str | None = '98c6a159a1f6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('customer_aliases',
    sa.Column('merged_id', sa.String(length=200), nullable=False),
    sa.Column('survivor_id', sa.String(length=200), nullable=False),
    sa.Column('merge_id', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('merged_id', name=op.f('pk_customer_aliases'))
    )
    with op.batch_alter_table('customer_aliases', schema=None) as batch_op:
        batch_op.create_index('ix_customer_aliases_survivor', ['survivor_id'], unique=False)

    # a constant default: existing rows count, and no table rewrite on either database
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('counted', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_column('counted')

    with op.batch_alter_table('customer_aliases', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_aliases_survivor')

    op.drop_table('customer_aliases')
