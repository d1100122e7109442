"""erasure tombstones keep a hash of the customer id

Revision ID: 6664a0076127
Revises: 16921264ff81
Create Date: 2026-11-23 15:58:59.604897

``erased_customers`` kept the erased customer id in clear; it now keeps its SHA-256
(``shared.erasure.tombstone_key``). Existing tombstones are converted here, in Python
(SQLite has no SHA-256), and the alias rows naming an erased customer are dropped, as an
erasure now does. The downgrade cannot give the ids back: it refuses while tombstones
exist (the old code would not recognise a hashed one, so replays would resurrect them).
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '6664a0076127'
down_revision: str | None = '16921264ff81'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 2000


def _tombstone_key(customer_id: str) -> str:
    # shared.erasure.tombstone_key as of this revision, frozen here: a later change of
    # that function needs its own migration of the digests stored by this one
    return hashlib.sha256(customer_id.encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table('erased_customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_hash', sa.String(length=64), nullable=True))

    connection = op.get_bind()
    tombstones = sa.table(
        'erased_customers', sa.column('customer_id', sa.String), sa.column('customer_hash', sa.String)
    )
    aliases = sa.table(
        'customer_aliases', sa.column('merged_id', sa.String), sa.column('survivor_id', sa.String)
    )
    after = ''
    while True:
        ids = connection.execute(
            sa.select(tombstones.c.customer_id)
            .where(tombstones.c.customer_id > after)
            .order_by(tombstones.c.customer_id)
            .limit(_CHUNK)
        ).scalars().all()
        if not ids:
            break
        connection.execute(
            tombstones.update()
            .where(tombstones.c.customer_id == sa.bindparam('id'))
            .values(customer_hash=sa.bindparam('hash')),
            [{'id': customer_id, 'hash': _tombstone_key(customer_id)} for customer_id in ids],
        )
        connection.execute(
            aliases.delete().where(
                aliases.c.merged_id.in_(ids) | aliases.c.survivor_id.in_(ids)
            )
        )
        after = ids[-1]

    with op.batch_alter_table('erased_customers', schema=None) as batch_op:
        batch_op.drop_constraint('pk_erased_customers', type_='primary')
        batch_op.drop_column('customer_id')
        batch_op.alter_column('customer_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_primary_key('pk_erased_customers', ['customer_hash'])


def downgrade() -> None:
    connection = op.get_bind()
    if connection.execute(sa.text('SELECT 1 FROM erased_customers LIMIT 1')).first():
        raise RuntimeError(
            'erased_customers holds hashed tombstones: the erased customer ids cannot be '
            'restored, and the previous revision would not recognise the hashes (replays '
            'would bring the erased customers back). Not downgraded.'
        )
    with op.batch_alter_table('erased_customers', schema=None) as batch_op:
        batch_op.drop_constraint('pk_erased_customers', type_='primary')
        batch_op.drop_column('customer_hash')
        batch_op.add_column(sa.Column('customer_id', sa.String(length=200), nullable=False))
        batch_op.create_primary_key('pk_erased_customers', ['customer_id'])
