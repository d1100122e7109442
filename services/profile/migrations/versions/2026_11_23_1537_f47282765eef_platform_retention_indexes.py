"""platform retention indexes

Revision ID: f47282765eef
Revises: 9d48eef514e0
Create Date: 2026-11-23 15:37:10.702208
"""

from collections.abc import Sequence

from shared.platform_migrations import (
    create_platform_retention_indexes,
    drop_platform_retention_indexes,
)


revision: str = 'f47282765eef'
down_revision: str | None = '9d48eef514e0'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_platform_retention_indexes()


def downgrade() -> None:
    drop_platform_retention_indexes()
