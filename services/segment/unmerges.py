"""``profile.unmerged`` in segment: the restored profiles' orders count for them again.

The event names, per restored profile, its customer ids (no longer aliases of the
survivor) and its order ids (segment moved them to the survivor at the merge); both
sides are re-aggregated from their orders in the same batch and their changes published.
Applying it again changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.segment.unmerge_repository import give_back
from shared.events import ProfileUnmergedPayload

if TYPE_CHECKING:
    from services.segment.per_event import EventBatch


def apply_unmerge(batch: EventBatch, unmerge: ProfileUnmergedPayload) -> None:
    batch.flush_orders()
    for profile_id in unmerge.restored_ids:
        give_back(
            batch.session,
            profile_id,
            unmerge.customer_ids.get(profile_id, [profile_id]),
            unmerge.order_ids.get(profile_id, []),
        )
    for customer_id in (unmerge.survivor_id, *unmerge.restored_ids):
        batch.recompute_from_orders(customer_id)
