"""platform retention indexes

Revision ID: b1830f00bb77
Revises: 0d34eddfa3d9
Create Date: 2026-11-23 15:37:10.095039
"""

from collections.abc import Sequence

from shared.platform_migrations import (
    create_platform_retention_indexes,
    drop_platform_retention_indexes,
)


revision: str = 'b1830f00bb77'
down_revision: str | None = '0d34eddfa3d9'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_platform_retention_indexes()


def downgrade() -> None:
    drop_platform_retention_indexes()
