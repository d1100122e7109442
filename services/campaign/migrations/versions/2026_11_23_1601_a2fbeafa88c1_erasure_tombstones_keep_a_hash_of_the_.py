"""erasure tombstones keep a hash of the customer id

Revision ID: a2fbeafa88c1
Revises: 12911f6fa27e
Create Date: 2026-11-23 16:01:58.303155

An erased customer was an ``audience`` row with ``erased`` set, keyed by the customer id
in clear. Now a tombstone in ``erased_customers`` keeps only the id's SHA-256
(``shared.erasure.tombstone_key``), the audience row goes, and the orders, entries and
receipts the reports still count are kept under that digest. Existing erased rows are
converted here, in Python (SQLite has no SHA-256). The downgrade cannot give the ids back:
it refuses while tombstones exist.
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'a2fbeafa88c1'
down_revision: str | None = '12911f6fa27e'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 500


def _tombstone_key(customer_id: str) -> str:
    # shared.erasure.tombstone_key as of this revision, frozen here: a later change of
    # that function needs its own migration of the digests stored by this one
    return hashlib.sha256(customer_id.encode()).hexdigest()


def upgrade() -> None:
    op.create_table('erased_customers',
    sa.Column('customer_hash', sa.String(length=64), nullable=False),
    sa.Column('erasure_id', sa.String(length=200), nullable=True),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('customer_hash', name=op.f('pk_erased_customers'))
    )

    connection = op.get_bind()
    audience = sa.table(
        'audience',
        sa.column('customer_id', sa.String),
        sa.column('erased', sa.Boolean),
        sa.column('updated_at', sa.DateTime(timezone=True)),
    )
    tombstones = sa.table(
        'erased_customers',
        sa.column('customer_hash', sa.String),
        sa.column('erasure_id', sa.String),
        sa.column('erased_at', sa.DateTime(timezone=True)),
    )
    aliases = sa.table(
        'customer_aliases', sa.column('merged_id', sa.String), sa.column('survivor_id', sa.String)
    )
    runs = sa.table('launch_runs', sa.column('cursor', sa.String))
    after = ''
    while True:
        erased = connection.execute(
            sa.select(audience.c.customer_id, audience.c.updated_at)
            .where(audience.c.erased.is_(True), audience.c.customer_id > after)
            .order_by(audience.c.customer_id)
            .limit(_CHUNK)
        ).all()
        if not erased:
            break
        ids = [customer_id for customer_id, _ in erased]
        keys = {customer_id: _tombstone_key(customer_id) for customer_id in ids}
        # the erasure's own id was never kept on the row; its time is the row's last change
        connection.execute(
            tombstones.insert(),
            [
                {'customer_hash': keys[customer_id], 'erasure_id': None, 'erased_at': at}
                for customer_id, at in erased
            ],
        )
        for name in ('customer_orders', 'entries', 'receipts'):
            table = sa.table(name, sa.column('customer_id', sa.String))
            connection.execute(
                table.update()
                .where(table.c.customer_id.in_(ids))
                .values(customer_id=sa.case(keys, value=table.c.customer_id))
            )
        connection.execute(
            aliases.delete().where(aliases.c.merged_id.in_(ids) | aliases.c.survivor_id.in_(ids))
        )
        connection.execute(audience.delete().where(audience.c.customer_id.in_(ids)))
        # a launch's cursor naming one resumes after the audience id before it instead
        for customer_id in ids:
            connection.execute(
                runs.update()
                .where(runs.c.cursor == customer_id)
                .values(
                    cursor=sa.select(sa.func.max(audience.c.customer_id))
                    .where(audience.c.customer_id < customer_id)
                    .scalar_subquery()
                )
            )
        after = ids[-1]

    with op.batch_alter_table('audience', schema=None) as batch_op:
        batch_op.drop_column('erased')


def downgrade() -> None:
    connection = op.get_bind()
    if connection.execute(sa.text('SELECT 1 FROM erased_customers LIMIT 1')).first():
        raise RuntimeError(
            'erased_customers holds hashed tombstones: the erased customer ids cannot be '
            'restored as erased audience rows, and without them the previous revision would '
            'let replayed events bring the erased customers back. Not downgraded.'
        )
    with op.batch_alter_table('audience', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('erased', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.drop_table('erased_customers')
