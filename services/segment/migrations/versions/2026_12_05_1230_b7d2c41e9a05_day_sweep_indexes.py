"""day sweep indexes: customers by first and last purchase

Revision ID: b7d2c41e9a05
Revises: 2e850daa52e1
Create Date: 2026-12-05 12:30:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = 'b7d2c41e9a05'
down_revision: str | None = '2e850daa52e1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('customer_scores', schema=None) as batch_op:
        batch_op.create_index('ix_customer_scores_first_order_at', ['first_order_at'], unique=False)
        batch_op.create_index('ix_customer_scores_last_order_at', ['last_order_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('customer_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_scores_last_order_at')
        batch_op.drop_index('ix_customer_scores_first_order_at')
