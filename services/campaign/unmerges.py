"""``profile.unmerged`` in campaign: the restored profiles' orders and ids are theirs again.

The orders the event lists per restored profile count for it again (conversions from
then on) and its customer ids stop being aliases of the survivor, so its own audience
events apply again. Campaign entries moved to the survivor at the merge stay with it (the
merge re-keyed them; they record what was decided for the merged customer). Applying it
again changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, delete, update
from sqlalchemy.orm import Session

from services.campaign.models import CustomerAlias, CustomerOrder
from shared.db import chunks
from shared.events import ProfileUnmergedEvent

ORDERS = cast(Table, CustomerOrder.__table__)
ALIASES = cast(Table, CustomerAlias.__table__)


def apply_unmerges(session: Session, events: Sequence[ProfileUnmergedEvent]) -> None:
    for event in events:
        data = event.data
        for profile_id in data.restored_ids:
            for chunk in chunks(data.order_ids.get(profile_id, []), 500):
                session.execute(
                    update(ORDERS)
                    .where(ORDERS.c.order_id.in_(list(chunk)))
                    .values(customer_id=profile_id)
                )
            ids = data.customer_ids.get(profile_id, [profile_id])
            for chunk in chunks(ids, 500):
                session.execute(delete(ALIASES).where(ALIASES.c.merged_id.in_(list(chunk))))
    session.flush()
