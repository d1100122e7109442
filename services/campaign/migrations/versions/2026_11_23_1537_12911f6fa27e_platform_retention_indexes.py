"""platform retention indexes

Revision ID: 12911f6fa27e
Revises: 7161e8f096ca
Create Date: 2026-11-23 15:37:11.987410
"""

from collections.abc import Sequence

from shared.platform_migrations import (
    create_platform_retention_indexes,
    drop_platform_retention_indexes,
)


revision: str = '12911f6fa27e'
down_revision: str | None = '7161e8f096ca'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_platform_retention_indexes()


def downgrade() -> None:
    drop_platform_retention_indexes()
