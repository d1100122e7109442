"""``profile.unmerged`` in campaign: the restored profiles' orders and ids are theirs again.

The orders the event lists per restored profile count for it again (conversions from
then on) and its customer ids stop being aliases of the survivor, so its own audience
events apply again. Campaign entries moved to the survivor at the merge stay with it (the
merge re-keyed them; they record what was decided for the merged customer). The contact
policies the event carries (each restored profile's and the survivor's) are set on their
audience rows, unless a newer one is held: while merged, a restored id's own policy
events were ignored, and a new one may never come. Applying it again changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, delete, update
from sqlalchemy.orm import Session

from services.campaign.models import AudienceMember, CustomerAlias, CustomerOrder
from services.campaign.repository import Projections
from shared.db import chunks
from shared.events import ProfileUnmergedEvent, ensure_aware, utcnow

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
        _set_policies(session, event)
    session.flush()


def _set_policies(session: Session, event: ProfileUnmergedEvent) -> None:
    policies = event.data.contact_policies
    if not policies:
        return
    rows = Projections(session).audience_rows(list(policies))
    now = utcnow()
    for customer_id, policy in policies.items():
        at = policy.updated_at or event.occurred_at
        row = rows.get(customer_id)
        if row is None:
            row = AudienceMember(customer_id=customer_id, segments=[], tags=[], updated_at=now)
            session.add(row)
        elif row.policy_updated_at is not None and ensure_aware(at) < ensure_aware(
            row.policy_updated_at
        ):
            continue  # a newer policy is held (the event came late)
        row.contact_policy = policy.model_dump(mode="json")
        row.policy_updated_at = at
        row.updated_at = now
