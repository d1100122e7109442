"""``profile.unmerged`` in campaign: the restored profiles' orders and ids are theirs again.

The orders the event lists per restored profile count for it again (conversions from
then on) and its customer ids stop being aliases of the survivor, so its own audience
events apply again. Campaign entries the merge re-keyed to the survivor are keyed back to the
restored ids as they were (customer id, entry number, counted: kept in
``merged_entries`` by the merge), so a restored customer's sent entry and its message are
its own again, and the survivor's entries count as before the merge. The contact
policies the event carries (each restored profile's and the survivor's) are set on their
audience rows, unless a newer one is held: while merged, a restored id's own policy
events were ignored, and a new one may never come. Applying it again changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.orm import Session

from services.campaign.models import AudienceMember, CustomerAlias, CustomerOrder, MergedEntry
from services.campaign.projection_repository import Projections
from services.campaign.repository import Entries
from shared.db import chunks
from shared.events import ProfileUnmergedEvent, ensure_aware, utcnow

ORDERS = cast(Table, CustomerOrder.__table__)
ALIASES = cast(Table, CustomerAlias.__table__)
MERGED = cast(Table, MergedEntry.__table__)


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
        _key_entries_back(session, event)
    session.flush()


def _key_entries_back(session: Session, event: ProfileUnmergedEvent) -> None:
    data = event.data
    kept = session.scalars(select(MergedEntry).where(MergedEntry.merge_id == data.merge_id)).all()
    if not kept:
        return  # applied already, or a merge that moved no entries
    restored = {cid for ids in data.customer_ids.values() for cid in ids} | set(data.restored_ids)
    changes = [
        {
            "id": k.entry_id,
            "customer_id": k.customer_id,
            "entry_no": k.entry_no,
            "counted": k.counted,
        }
        for k in kept
        if k.customer_id in restored or k.customer_id == data.survivor_id
    ]
    # a restored entry must not meet the survivor's on the unique key mid-statement:
    # restored ids had no entries of their own while merged, so their old numbers are free
    Entries(session).rekey(changes)
    session.execute(delete(MERGED).where(MERGED.c.merge_id == data.merge_id))


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
