"""Who is whom: merged ids' aliases and erased customers' tombstones."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import (
    delete,
    insert,
    update,
)
from sqlalchemy.orm import Session

from services.segment.models import (
    ErasedCustomer,
)
from services.segment.repository import ALIASES, CHUNK
from shared.db import (
    chunks,
    read_datetime,
    select_in,
)
from shared.erasure import tombstone_keys


class Identities:
    """Merged aliases and erasure tombstones."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def survivors(self, customer_ids: Sequence[str]) -> dict[str, str]:
        sql = "SELECT merged_id, survivor_id FROM customer_aliases WHERE merged_id IN ({marks})"
        rows = select_in(self.session, sql, customer_ids)
        return {merged: survivor for merged, survivor in rows}

    def add_aliases(self, merged_ids: Sequence[str], survivor_id: str, merge_id: str) -> None:
        table = ALIASES
        # earlier merges into a now merged id follow it to the new survivor
        for chunk in chunks(list(merged_ids), CHUNK):
            self.session.execute(
                update(table).where(table.c.survivor_id.in_(chunk)).values(survivor_id=survivor_id)
            )
            self.session.execute(delete(table).where(table.c.merged_id.in_(chunk)))
        self.session.execute(
            insert(table),
            [
                {"merged_id": m, "survivor_id": survivor_id, "merge_id": merge_id}
                for m in merged_ids
            ],
        )
        # a survivor is never itself an alias
        self.session.execute(delete(table).where(table.c.merged_id == survivor_id))

    def erased(self, customer_ids: Sequence[str]) -> dict[str, datetime]:
        """The erasure time of each of these customers that was erased."""
        keys = tombstone_keys(customer_ids)
        sql = (
            "SELECT customer_hash, requested_at FROM erased_customers "
            "WHERE customer_hash IN ({marks})"
        )
        rows = select_in(self.session, sql, keys)
        return {keys[key]: cast(datetime, read_datetime(at)) for key, at in rows}

    def add_erasure(self, tombstone: ErasedCustomer) -> None:
        self.session.merge(tombstone)
        self.session.flush()

    def forget_aliases_of(self, customer_id: str) -> None:
        """Drop the alias rows naming an erased customer, as merged id or as survivor.

        Profile erases every id of a merged customer, each with its own tombstone, so a
        late order of any of them is still recognised without the alias.
        """
        table = ALIASES
        self.session.execute(
            delete(table).where(
                (table.c.merged_id == customer_id) | (table.c.survivor_id == customer_id)
            )
        )
