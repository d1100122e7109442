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

from services.profile import documents, domain, rules
from services.profile.config import Settings
from services.profile.locking import lock_profiles
from services.profile.repository import ProfileRepository
from services.profile.unmerge_repository import MergeSnapshots
from shared import topics
from shared.bus import add_to_outbox
from shared.errors import Conflict, NotFound
from shared.events import ContactPolicy, ProfileUnmergedEvent, ProfileUnmergedPayload, utcnow

SOURCE = "profile"


def _subtract_interactions(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, int):
            into[key] = max(0, into.get(key, 0) - value)
    for stage, count in other["tickets_by_stage"].items():
        left = into["tickets_by_stage"].get(stage, 0) - count
        if left > 0:
            into["tickets_by_stage"][stage] = left
        else:
            into["tickets_by_stage"].pop(stage, None)


def _take_back(survivor: dict[str, Any], before: dict[str, Any], split: dict[str, Any]) -> None:
    """Remove from the survivor what it got only from ``split`` at the merge."""
    for name, value in split["f"].items():
        if survivor["f"].get(name) == value and before["f"].get(name) != value:
            if name in before["f"]:
                survivor["f"][name] = before["f"][name]
                survivor["prov"][name] = before["prov"][name]
            else:
                survivor["f"].pop(name, None)
                survivor["prov"].pop(name, None)
    for kind in domain.CONTACT_FIELDS:
        for value in split["contacts"][kind]:
            if value not in before["contacts"][kind]:
                survivor["contacts"][kind].pop(value, None)
    _subtract_interactions(survivor["ix"], split["ix"])
    survivor["manual_tags"] = sorted(
        set(survivor["manual_tags"]) - (set(split["manual_tags"]) - set(before["manual_tags"]))
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
    survivor = rows[survivor_id].doc
    before_survivor, _ = taken[survivor_id]
    restored: dict[str, dict[str, Any]] = {}
    customer_ids: dict[str, list[str]] = {}
    for pid in split_ids:
        doc, ids = taken[pid]
        _take_back(survivor, before_survivor, doc)
        snapshots.move_customers(ids, pid)
        doc["tx"] = domain.rebuild_transactions(repo.contributions_of(pid))
        doc["rule_tags"] = []  # re-derived below, with the tag index
        restored[pid], customer_ids[pid] = doc, ids
    gone = {cid for ids in customer_ids.values() for cid in ids}
    survivor["merged_ids"] = sorted(set(survivor["merged_ids"]) - gone)
    survivor["tx"] = domain.rebuild_transactions(repo.contributions_of(survivor_id))
    repo.insert_profiles(
        [
            {**documents.profile_row(pid, doc, now), "created_at": now}
            for pid, doc in restored.items()
        ]
    )
    repo.save_scores([documents.scores_row(pid, doc) for pid, doc in restored.items()])
    for pid, doc in restored.items():
        repo.set_tags(pid, "manual", doc["manual_tags"])
    repo.set_tags(survivor_id, "manual", survivor["manual_tags"])
    documents.refresh_rule_tags(
        repo, rules.RuleBook(repo.tag_rules()), {survivor_id: survivor, **restored}, settings
    )
    repo.set_segments({pid: doc["segments"] for pid, doc in restored.items()})
    repo.update_profiles([documents.profile_row(survivor_id, survivor, now)])
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
                order_ids={pid: [o["order_id"] for o in repo.orders_of(pid)] for pid in split_ids},
                contact_policies={
                    pid: ContactPolicy.model_validate({**doc["policy"], "customer_id": pid})
                    for pid, doc in {survivor_id: survivor, **restored}.items()
                    if doc.get("policy")
                },
            ),
        ),
    )
    documents.publish_updated(session, survivor_id, survivor)
    for pid, doc in restored.items():
        documents.publish_updated(session, pid, doc)
    session.flush()
    return {"merge_id": merge_id, "survivor_id": survivor_id, "restored_ids": split_ids}
