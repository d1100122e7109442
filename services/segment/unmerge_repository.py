"""The queries of an unmerge (``profile.unmerged``) in segment."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from services.segment.repository import ALIASES, ORDERS
from shared.db import chunks

CHUNK = 500


def give_back(
    session: Session, profile_id: str, customer_ids: list[str], order_ids: list[str]
) -> None:
    """These orders count for ``profile_id`` again, and its customer ids are no aliases."""
    for chunk in chunks(order_ids, CHUNK):
        session.execute(
            update(ORDERS).where(ORDERS.c.order_id.in_(chunk)).values(customer_id=profile_id)
        )
    for chunk in chunks(customer_ids, CHUNK):
        session.execute(delete(ALIASES).where(ALIASES.c.merged_id.in_(chunk)))
