"""initial policy version: store the default policy as version 1 with when it came into force

Before, version 1 was only implied (created_at null) until the first PUT stored it with
that PUT's time, so it looked created milliseconds before version 2. Now it is stored
here, once, with the first batch's computed_at if the service ran before (it was in force
since then), else now (this first start); it never changes afterwards. A version 1
stored by a first PUT (with the PUT's time) moves back to the first batch's computed_at.

Revision ID: e3c7a9b1d2f4
Revises: e7a3c9d1b5f2
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from services.segment.policy import DEFAULT_POLICY

revision: str = 'e3c7a9b1d2f4'
down_revision: str | None = 'e7a3c9d1b5f2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POLICIES = sa.table(
    'scoring_policies',
    sa.column('version', sa.Integer),
    sa.column('policy', sa.JSON),
    sa.column('created_at', sa.DateTime(timezone=True)),
    sa.column('comment', sa.String),
)
CUT_POINTS = sa.table('cut_points', sa.column('computed_at', sa.DateTime(timezone=True)))


def _aware(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):  # SQLite hands back text
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def upgrade() -> None:
    bind = op.get_bind()
    first = _aware(bind.execute(sa.select(sa.func.min(CUT_POINTS.c.computed_at))).scalar_one())
    now = datetime.now(UTC)
    stored = bind.execute(
        sa.select(POLICIES.c.created_at).where(
            POLICIES.c.version == 1, POLICIES.c.comment == 'default'
        )
    ).first()
    if stored is not None:
        # a first PUT stored version 1 with its own time: it was in force since the first batch
        at = _aware(stored[0])
        if first is not None and at is not None and first < at:
            bind.execute(
                POLICIES.update().where(POLICIES.c.version == 1).values(created_at=first)
            )
        return
    if bind.execute(sa.select(sa.func.count()).select_from(POLICIES)).scalar_one():
        return  # versions stored otherwise: left as they are
    op.bulk_insert(
        POLICIES,
        [
            {
                'version': 1,
                'policy': DEFAULT_POLICY.model_dump(mode='json'),
                'created_at': min(first, now) if first is not None else now,
                'comment': 'default',
            }
        ],
    )


def downgrade() -> None:
    # the stored version 1 is what the first PUT stored before: the older code reads it
    pass
