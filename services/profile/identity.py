"""Identity resolution: profiles sharing a verified contact merged into a survivor, with
the safeguards against false merges (an unmerge is ``unmerge.py``). Flush, never commit."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from services.profile.config import Settings
from services.profile.documents import (
    SOURCE,
    public_slice,
    publish_policy,
    publish_updated,
    refresh_rule_tags,
)
from services.profile.locking import lock_profiles
from services.profile.merging import merge_into
from services.profile.normalize import names_conflict
from services.profile.reads import load
from services.profile.repository import ProfileRepository, ProfileRow
from services.profile.rules import RuleBook
from services.profile.transactions import rebuild_transactions
from services.profile.unmerge_repository import MergeRecords, MergeSnapshots
from shared import topics
from shared.bus import add_to_outbox
from shared.errors import NotFound, ValidationProblem
from shared.events import ProfileMergedEvent, ProfileMergedPayload, utcnow


def _one_person(rows: list[ProfileRow]) -> bool:
    """Whether every profile has a known name and it is the same one."""
    names = [row.profile.facts.get("name") for row in rows]
    if not names or any(not n for n in names):
        return False
    return not any(names_conflict(names[0], n) for n in names[1:])


def survivor_of(rows: list[ProfileRow]) -> ProfileRow:
    """The documented survivor rule: the profile first seen earliest (by the time of the
    data, not of arrival) survives; on a tie, the smallest customer id."""
    return min(rows, key=lambda r: (r.profile.first_seen, r.profile_id))


def resolve_identity(session: Session, kind: str, value: str, settings: Settings) -> str | None:
    """Merge the profiles sharing one verified contact, unless a safeguard forbids it.

    Safeguards against the household / shop-assistant false merge:
    1. only contacts verified on both profiles count (order contacts are never verified);
    2. a contact held by ``shared_contact_threshold`` or more customer ids is a shared one
       (a family phone, a shop assistant typing their own number) and merges nothing,
       unless every holder carries the same known name (one person with many accounts);
    3. two profiles whose names are both known and differ never merge automatically.
    Every decision, merge or refusal, is audited. Returns the merge id if one happened.
    """
    repo = ProfileRepository(session)
    holders = repo.contact_holders(kind, value)
    holder_ids = {cid for cid, _, _ in holders}
    candidates = sorted(
        {pid for _, verified, pid in holders if verified or not settings.merge_requires_verified}
    )
    if len(candidates) < 2:
        return None
    now = utcnow()
    holder_rows = repo.profiles({pid for _, _, pid in holders})
    rows = [holder_rows[pid] for pid in candidates if pid in holder_rows]
    if len(holder_ids) >= settings.shared_contact_threshold and not _one_person(
        list(holder_rows.values())
    ):
        for pid in candidates:
            repo.audit(
                at=now,
                actor="identity-resolution",
                action="merge_refused",
                subject=pid,
                detail={"kind": kind, "reason": "shared_contact", "holders": len(holder_ids)},
            )
        return None
    survivor = survivor_of(rows)
    mergeable = []
    for row in rows:
        if row.profile_id == survivor.profile_id:
            continue
        if settings.merge_blocked_on_name_conflict and names_conflict(
            survivor.profile.facts.get("name"), row.profile.facts.get("name")
        ):
            for pid in (survivor.profile_id, row.profile_id):
                repo.audit(
                    at=now,
                    actor="identity-resolution",
                    action="merge_refused",
                    subject=pid,
                    detail={"kind": kind, "reason": "name_conflict"},
                )
            continue
        mergeable.append(row.profile_id)
    if not mergeable:
        return None
    return merge_profiles(
        session,
        survivor.profile_id,
        mergeable,
        f"shared verified {kind}",
        "identity-resolution",
        settings,
    )


def merge_customers(
    session: Session,
    customer_id: str,
    merge_ids: list[str],
    reason: str,
    actor: str,
    settings: Settings,
) -> tuple[str, str, list[str]]:
    """The manual merge (``POST /v1/customers/{id}/merge``): the profiles of ``merge_ids``
    folded into ``customer_id``'s, which survives; returns (merge id, survivor, merged
    profile ids). 404 if a customer is unknown, 422 if they all are the survivor already."""
    survivor = load(session, customer_id).profile_id
    others: list[str] = []
    for other in merge_ids:
        profile_id = load(session, other).profile_id
        if profile_id != survivor and profile_id not in others:
            others.append(profile_id)
    if not others:
        raise ValidationProblem("those customers already belong to this profile")
    merge_id = merge_profiles(session, survivor, others, reason, actor, settings)
    return merge_id, survivor, others


def merge_profiles(
    session: Session,
    survivor_id: str,
    other_ids: list[str],
    reason: str,
    actor: str,
    settings: Settings,
) -> str:
    """Fold profiles into a survivor; audited; publishes ``profile.merged``."""
    repo = ProfileRepository(session)
    lock_profiles(session, [survivor_id, *other_ids])
    rows = repo.profiles([survivor_id, *other_ids])
    if survivor_id not in rows:
        raise NotFound("no such customer")
    missing = [pid for pid in other_ids if pid not in rows]
    if missing:
        raise NotFound(f"no such customer: {len(missing)} of merge_ids")
    survivor = rows[survivor_id].profile
    before_slice = public_slice(survivor)
    before_policy = survivor.policy
    merge_id = str(uuid.uuid4())
    # what an unmerge gives back (services/profile/unmerge.py)
    snapshots = MergeSnapshots(session)
    for pid in [survivor_id, *other_ids]:
        snapshots.add(merge_id, pid, rows[pid].profile, sorted({pid, *repo.aliases_of(pid)}))
    merged: list[str] = []
    for pid in other_ids:
        other = rows[pid].profile
        merge_into(survivor, other)
        merged += [pid, *other.merged_ids]
    survivor.merged_ids = sorted(set(survivor.merged_ids) | set(merged))
    repo.repoint(other_ids, survivor_id)
    repo.delete_profiles(other_ids)
    survivor.transactions = rebuild_transactions(repo.contributions_of(survivor_id))
    repo.set_tags(survivor_id, "manual", survivor.manual_tags)
    # the survivor's rule tags are re-evaluated against its stored ones: only tags that
    # change are written (the merged profiles' rows went with delete_profiles)
    refresh_rule_tags(repo, RuleBook(repo.tag_rules()), {survivor_id: survivor}, settings)
    repo.set_segments({survivor_id: survivor.scores.segments})
    now = utcnow()
    repo.update_profiles({survivor_id: survivor}, now)
    repo.save_scores({survivor_id: survivor.scores})
    MergeRecords(session).add(
        {
            "merge_id": merge_id,
            "survivor_id": survivor_id,
            "merged_ids": other_ids,
            "reason": reason,
            "actor": actor,
            "merged_at": now,
        }
    )
    repo.audit(
        at=now,
        actor=actor,
        action="merge",
        subject=survivor_id,
        detail={"merge_id": merge_id, "merged_ids": other_ids, "reason": reason},
    )
    add_to_outbox(
        session,
        topics.PROFILES,
        ProfileMergedEvent(
            source=SOURCE,
            key=survivor_id,
            data=ProfileMergedPayload(
                survivor_id=survivor_id, merged_ids=other_ids, reason=reason, merge_id=merge_id
            ),
        ),
    )
    if public_slice(survivor) != before_slice:
        publish_updated(session, survivor_id, survivor)
    if survivor.policy != before_policy and survivor.policy is not None:
        publish_policy(session, survivor_id, survivor.policy)
    return merge_id
