"""platform retention indexes

Revision ID: 16921264ff81
Revises: 8af944d1fa7c
Create Date: 2026-11-23 15:37:11.400263
"""

from collections.abc import Sequence

from shared.platform_migrations import (
    create_platform_retention_indexes,
    drop_platform_retention_indexes,
)


revision: str = '16921264ff81'
down_revision: str | None = '8af944d1fa7c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_platform_retention_indexes()


def downgrade() -> None:
    drop_platform_retention_indexes()
