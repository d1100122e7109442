"""What a profile merge does to campaign's per-customer state (flush, never commit).

A merge (``profile.merged``: ``survivor_id`` and ``merged_ids``) makes several customer
ids one customer. Everything campaign keeps per customer id follows the survivor:

- the merged ids' orders (conversions are attributed to the survivor);
- their campaign entries: the contacts the frequency cap counts, the re-entry history,
  and treatment / control membership. Entries of one campaign that were one occasion for
  the merged customer (see :func:`counted_entries`) count once in the report;
- the aliases (merged id -> survivor): a later order of a merged id counts for the
  survivor, and a merged id's own audience events are ignored afterwards.

Applying a merge again (a redelivery) changes nothing; a merge delivered late (after the
ids had more entries, or after the survivor itself was merged away) gives the same state
as if it had come in time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from services.campaign.models import MergedEntry
from services.campaign.projection_repository import Aliases, Projections
from services.campaign.repository import Campaigns, Entries
from shared.events import ProfileMergedPayload, ensure_aware

#: which entry of an occasion counts: a contacted customer can never be control
_PREFERENCE = {"sent": 0, "holdout": 1}


def counted_entries(
    entries: Iterable[Any], *, reentry_allowed: bool, cooldown: timedelta
) -> set[int]:
    """The ids of one customer's entries into one campaign that count in its report.

    Entries belong to one occasion when the launch's re-entry rules would not have let one
    customer enter twice: any two entries of a campaign without re-entry; otherwise the
    same run of a batch campaign, the same trigger occurrence, or an entry within the
    cooldown of the occasion's first entry. Of each occasion one entry counts: a contacted
    one if any (the message went out, so the customer was treated), else a held-out one,
    else an excluded one; the earliest of those.
    """
    occasions: list[list[Any]] = []
    for entry in sorted(entries, key=lambda e: (ensure_aware(e.entered_at), e.id)):
        occasion = next((o for o in occasions if _same_run_or_trigger(o, entry)), None)
        if occasion is None and occasions:
            first = ensure_aware(occasions[-1][0].entered_at)
            if not reentry_allowed or ensure_aware(entry.entered_at) - first < cooldown:
                occasion = occasions[-1]
        if occasion is None:
            occasions.append([entry])
        else:
            occasion.append(entry)
    return {
        min(o, key=lambda e: (_PREFERENCE.get(e.outcome, 2), ensure_aware(e.entered_at), e.id)).id
        for o in occasions
    }


def _same_run_or_trigger(occasion: Sequence[Any], entry: Any) -> bool:
    return any(
        (entry.run_no and e.run_no == entry.run_no)
        or (entry.trigger_key is not None and e.trigger_key == entry.trigger_key)
        for e in occasion
    )


def apply_merge(
    session: Session, merge: ProfileMergedPayload, aliases: dict[str, str]
) -> tuple[str, list[str]]:
    """Move the merged ids' orders and entries to the survivor and record the aliases.

    ``aliases``: the known merged id -> survivor of the ids in the caller's batch; updated
    here. Returns the survivor (the merge's, or the one it was itself merged into since)
    and the ids merged away.
    """
    survivor = aliases.get(merge.survivor_id, merge.survivor_id)
    merged = [m for m in dict.fromkeys(merge.merged_ids) if m != survivor]
    if not merged:
        return survivor, []
    Projections(session).reassign_orders(merged, survivor)
    Aliases(session).add(merged, survivor, merge.merge_id)
    for merged_id, target in list(aliases.items()):
        if target in merged:
            aliases[merged_id] = survivor
    aliases.update(dict.fromkeys(merged, survivor))
    _move_entries(session, merged, survivor, merge.merge_id)
    return survivor, merged


def _move_entries(session: Session, merged: list[str], survivor: str, merge_id: str) -> None:
    entries = Entries(session)
    found = entries.of_customers([survivor, *merged])
    moving = {e.campaign_id for e in found if e.customer_id != survivor}
    if not moving:
        return  # a redelivered merge: nothing left under the merged ids
    by_campaign: dict[str, list[Any]] = defaultdict(list)
    for entry in found:
        if entry.campaign_id in moving:
            by_campaign[entry.campaign_id].append(entry)
    campaigns = {c.campaign_id: c for c in Campaigns(session).many(sorted(moving))}
    changes: list[dict[str, Any]] = []
    for campaign_id, rows in by_campaign.items():
        campaign = campaigns.get(campaign_id)
        counted = counted_entries(
            rows,
            reentry_allowed=campaign.reentry_allowed if campaign else False,
            cooldown=timedelta(days=campaign.cooldown_days if campaign else 0),
        )
        # the survivor keeps its entry numbers (its message ids derive from them); the
        # moved entries take the next free ones, so no step collides on the unique key
        next_no = 1 + max((e.entry_no for e in rows if e.customer_id == survivor), default=-1)
        for entry in sorted(rows, key=lambda e: (ensure_aware(e.entered_at), e.id)):
            entry_no = entry.entry_no
            if entry.customer_id != survivor:
                entry_no, next_no = next_no, next_no + 1
            is_counted = entry.id in counted
            if entry.customer_id != survivor or is_counted != bool(entry.counted):
                changes.append(
                    {
                        "id": entry.id,
                        "customer_id": survivor,
                        "entry_no": entry_no,
                        "counted": is_counted,
                    }
                )
    # what each changed entry was, for an unmerge to key it back (unmerges.py)
    before = {e.id: e for e in found}
    session.add_all(
        MergedEntry(
            merge_id=merge_id,
            entry_id=c["id"],
            customer_id=before[c["id"]].customer_id,
            entry_no=before[c["id"]].entry_no,
            counted=bool(before[c["id"]].counted),
        )
        for c in changes
        if session.get(MergedEntry, (merge_id, c["id"])) is None
    )
    entries.rekey(changes)
