"""order versions: every version of every order, for as_of in valid time

Revision ID: d5f1a2b3c4e6
Revises: b7d2c41e9a05
Create Date: 2026-12-05 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'd5f1a2b3c4e6'
down_revision: str | None = 'b7d2c41e9a05'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    'order_id, version_at, status_rank, customer_id, status, valid, created_at, '
    'purchased_at, net_e4, currency, channel, categories, province, city'
)


def upgrade() -> None:
    op.create_table(
        'order_versions',
        sa.Column('order_id', sa.String(length=200), nullable=False),
        sa.Column('version_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status_rank', sa.SmallInteger(), nullable=False),
        sa.Column('customer_id', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('valid', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('purchased_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('net_e4', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('channel', sa.String(length=50), nullable=True),
        sa.Column('categories', sa.JSON(), nullable=False),
        sa.Column('province', sa.String(length=100), nullable=True),
        sa.Column('city', sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint(
            'order_id', 'version_at', 'status_rank', name=op.f('pk_order_versions')
        ),
    )
    with op.batch_alter_table('order_versions', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_order_versions_customer_id'), ['customer_id'], unique=False
        )
    # the versions received before: the newest of each order is all that was kept
    op.execute(f'INSERT INTO order_versions ({COLUMNS}) SELECT {COLUMNS} FROM order_states')


def downgrade() -> None:
    with op.batch_alter_table('order_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_versions_customer_id'))
    op.drop_table('order_versions')
