"""Every version of every order (``order_versions``): the queries of the valid-time reads.

``order_states`` keeps the newest version of each order (what scoring now needs); this
table keeps them all, so ``as_of=T`` can take, per order, the newest version whose
``updated_at`` is at or before T (:mod:`services.segment.point_in_time`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pandas as pd
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from services.segment.models import OrderVersion
from services.segment.repository import CHUNK, ORDER_FRAME_COLUMNS, OrderStates
from shared.db import chunks, executemany, insert_sql, rows_of

VERSIONS = cast(Table, OrderVersion.__table__)
_COLUMNS = [c.name for c in VERSIONS.columns]


class OrderVersions:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, rows: list[dict[str, Any]]) -> None:
        """Store versions (``per_event.order_row`` dicts); one already stored stays as it is."""
        executemany(
            self.session,
            VERSIONS,
            insert_sql(VERSIONS, _COLUMNS) + " ON CONFLICT DO NOTHING",
            _COLUMNS,
            rows_of(rows, _COLUMNS),
        )

    def reassign(self, from_ids: Sequence[str], to_id: str) -> None:
        """A merge: the merged ids' versions count for the survivor, in the past too."""
        for chunk in chunks(list(from_ids), CHUNK):
            self.session.execute(
                update(VERSIONS).where(VERSIONS.c.customer_id.in_(chunk)).values(customer_id=to_id)
            )

    def delete_for(self, customer_id: str) -> None:
        self.session.execute(delete(VERSIONS).where(VERSIONS.c.customer_id == customer_id))

    def frame_as_of(
        self, as_of: datetime, customer_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Per order, its newest version at or before ``as_of``, as the orders frame scoring
        reads; with ``customer_ids``, only the orders those customers had then."""
        moment = as_of.astimezone(UTC)
        v = VERSIONS.c
        known = select(VERSIONS).where(v.version_at <= moment)
        if customer_ids is not None:
            theirs = select(v.order_id).where(v.customer_id.in_(list(customer_ids)))
            known = known.where(v.order_id.in_(theirs))
        rank = (
            func.row_number()
            .over(partition_by=v.order_id, order_by=(v.version_at.desc(), v.status_rank.desc()))
            .label("rank")
        )
        ranked = known.add_columns(rank).subquery()
        query = select(*(ranked.c[c] for c in ORDER_FRAME_COLUMNS)).where(ranked.c.rank == 1)
        if customer_ids is not None:
            query = query.where(ranked.c.customer_id.in_(list(customer_ids)))
        return OrderStates._frame(self.session.execute(query).all())
