"""Splitting a merge back by its ``merge_id`` (use case; flush, never commit).

Each merged-away profile comes back as it was just before the merge (its snapshot: facts,
contacts, tags, policy), with its customer ids, orders and interactions (the rows keep
their original customer id), and its transaction facet rebuilt from its orders. The
survivor loses what came only from them: their orders and interactions (rebuilt), their
contacts and interaction counts, and facts whose value it took from them (back to its
own value before the merge); what it learned since the merge stays. Audited, and
published as ``profile.unmerged``.

Limits: a merge made before snapshots existed cannot be split (409); nor one whose
survivor was merged again since (unmerge that later merge first); and identity
resolution may merge the two again on the next record that links them (a shared
verified contact) unless that contact is corrected.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.profile import documents, rules
from services.profile.config import Settings
from services.profile.domain import CONTACT_FIELDS, Profile
from services.profile.locking import lock_profiles
from services.profile.repository import ProfileRepository
from services.profile.transactions import rebuild_transactions, subtract_interactions
from services.profile.unmerge_repository import MergeSnapshots
from shared import topics
from shared.bus import add_to_outbox
from shared.errors import Conflict, NotFound
from shared.events import ContactPolicy, ProfileUnmergedEvent, ProfileUnmergedPayload, utcnow

SOURCE = "profile"


def _take_back(survivor: Profile, before: Profile, split: Profile) -> None:
    """Remove from the survivor what it got only from ``split`` at the merge."""
    for name, value in split.facts.items():
        if survivor.facts.get(name) == value and before.facts.get(name) != value:
            if name in before.facts:
                survivor.facts[name] = before.facts[name]
                survivor.provenance[name] = before.provenance[name]
            else:
                survivor.facts.pop(name, None)
                survivor.provenance.pop(name, None)
    for kind in CONTACT_FIELDS:
        for value in split.contacts[kind]:
            if value not in before.contacts[kind]:
                survivor.contacts[kind].pop(value, None)
    subtract_interactions(survivor.interactions, split.interactions)
    survivor.manual_tags = sorted(
        set(survivor.manual_tags) - (set(split.manual_tags) - set(before.manual_tags))
    )


def unmerge(session: Session, merge_id: str, actor: str, settings: Settings) -> dict[str, Any]:
    """Split the merge ``merge_id``; returns ``{merge_id, survivor_id, restored_ids}``.

    Two unmerges of one merge run one after the other (the merge record locked before
    anything is read): the second finds the snapshots gone and is a 409."""
    snapshots = MergeSnapshots(session)
    lock_profiles(session, [])  # SQLite: the write lock before the first read
    merge = snapshots.merge(merge_id, for_update=True)
    if merge is None:
        raise NotFound(f"no merge {merge_id}")
    lock_profiles(session, [merge["survivor_id"], *merge["merged_ids"]])
    taken = snapshots.of(merge_id)
    survivor_id = merge["survivor_id"]
    split_ids = [pid for pid in merge["merged_ids"] if pid in taken]
    if survivor_id not in taken or not split_ids:
        raise Conflict(
            f"merge {merge_id} was already split, or was made before merges kept what an "
            "unmerge needs",
            slug="unmerge-not-possible",
        )
    repo = ProfileRepository(session)
    rows = repo.profiles([survivor_id])
    if survivor_id not in rows:
        holder = repo.profile_by_customer(survivor_id)
        raise Conflict(
            f"the survivor {survivor_id} was merged again"
            + (f" into {holder.profile_id}: unmerge that first" if holder else ""),
            slug="unmerge-not-possible",
        )
    now = utcnow()
    survivor = rows[survivor_id].profile
    before_survivor, _ = taken[survivor_id]
    restored: dict[str, Profile] = {}
    customer_ids: dict[str, list[str]] = {}
    for pid in split_ids:
        profile, ids = taken[pid]
        _take_back(survivor, before_survivor, profile)
        snapshots.move_customers(ids, pid)
        profile.transactions = rebuild_transactions(repo.contributions_of(pid))
        profile.rule_tags = []  # re-derived below, with the tag index
        restored[pid], customer_ids[pid] = profile, ids
    gone = {cid for ids in customer_ids.values() for cid in ids}
    survivor.merged_ids = sorted(set(survivor.merged_ids) - gone)
    survivor.transactions = rebuild_transactions(repo.contributions_of(survivor_id))
    repo.insert_profiles(restored, now)
    repo.save_scores({pid: profile.scores for pid, profile in restored.items()})
    for pid, profile in restored.items():
        repo.set_tags(pid, "manual", profile.manual_tags)
    repo.set_tags(survivor_id, "manual", survivor.manual_tags)
    documents.refresh_rule_tags(
        repo, rules.RuleBook(repo.tag_rules()), {survivor_id: survivor, **restored}, settings
    )
    repo.set_segments({pid: profile.scores.segments for pid, profile in restored.items()})
    repo.update_profiles({survivor_id: survivor}, now)
    snapshots.drop(merge_id)
    repo.audit(
        at=now,
        actor=actor,
        action="unmerge",
        subject=survivor_id,
        detail={"merge_id": merge_id, "restored_ids": split_ids},
    )
    for pid in split_ids:
        repo.audit(
            at=now, actor=actor, action="unmerge", subject=pid, detail={"merge_id": merge_id}
        )
    add_to_outbox(
        session,
        topics.PROFILES,
        ProfileUnmergedEvent(
            source=SOURCE,
            key=survivor_id,
            data=ProfileUnmergedPayload(
                merge_id=merge_id,
                survivor_id=survivor_id,
                restored_ids=split_ids,
                customer_ids=customer_ids,
                order_ids={pid: [o.order_id for o in repo.orders_of(pid)] for pid in split_ids},
                contact_policies={
                    pid: ContactPolicy.model_validate({**profile.policy, "customer_id": pid})
                    for pid, profile in {survivor_id: survivor, **restored}.items()
                    if profile.policy
                },
            ),
        ),
    )
    documents.publish_updated(session, survivor_id, survivor)
    for pid, profile in restored.items():
        documents.publish_updated(session, pid, profile)
    session.flush()
    return {"merge_id": merge_id, "survivor_id": survivor_id, "restored_ids": split_ids}
