"""import jobs: rows accepted with warnings, the last committed line (resume)

Revision ID: 5e7a1c0d9b21
Revises: cc59eeca6d15
Create Date: 2026-12-05 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e7a1c0d9b21"
down_revision: str | None = "cc59eeca6d15"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("import_jobs") as batch:
        batch.add_column(sa.Column("warned", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("last_line", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("import_rejections") as batch:
        batch.add_column(
            sa.Column("outcome", sa.String(length=20), nullable=False, server_default="rejected")
        )


def downgrade() -> None:
    with op.batch_alter_table("import_rejections") as batch:
        batch.drop_column("outcome")
    with op.batch_alter_table("import_jobs") as batch:
        batch.drop_column("last_line")
        batch.drop_column("warned")
