"""audience drops predictive clv: campaign no longer copies segment's predictions

A customer's segment.changed is published only when their scores or memberships change,
so the copied p_alive / predicted CLV went stale or outlived segment's withdrawal.
Audiences reach predictions through custom segments instead (docs/campaign.md).

Revision ID: e7b1c2d3f4a5
Revises: d20650d6d2f2
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'e7b1c2d3f4a5'
down_revision: str | None = 'd20650d6d2f2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('audience', schema=None) as batch_op:
        batch_op.drop_column('predicted_clv_percentile')
        batch_op.drop_column('predicted_clv_e4')
        batch_op.drop_column('p_alive')


def downgrade() -> None:
    # the columns come back empty: the next segment.changed of each customer fills them
    with op.batch_alter_table('audience', schema=None) as batch_op:
        batch_op.add_column(sa.Column('p_alive', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('predicted_clv_e4', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('predicted_clv_percentile', sa.Double(), nullable=True))
