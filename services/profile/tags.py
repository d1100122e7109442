"""Manual tags and tag rules (a rule re-evaluated on every profile when it changes).
Flush, never commit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from services.profile import registration
from services.profile.config import Settings
from services.profile.documents import (
    public_slice,
    publish_updated,
    refresh_rule_tags,
    save_edited,
)
from services.profile.locking import load_for_update, lock_profiles
from services.profile.repository import ProfileRepository, ProfileRow
from services.profile.rules import RuleBook
from shared.errors import Conflict, NotFound
from shared.events import utcnow


def add_tags(
    session: Session, customer_id: str, tags: list[str], actor: str, settings: Settings
) -> ProfileRow:
    row = registration.load_or_register(session, customer_id)
    profile = row.profile
    before = public_slice(profile)
    profile.manual_tags = sorted(set(profile.manual_tags) | set(tags))
    repo = ProfileRepository(session)
    repo.set_tags(row.profile_id, "manual", profile.manual_tags)
    repo.audit(
        at=utcnow(), actor=actor, action="tag", subject=row.profile_id, detail={"added": tags}
    )
    save_edited(session, row, before, settings)
    return row


def remove_tag(
    session: Session, customer_id: str, tag: str, actor: str, settings: Settings
) -> ProfileRow:
    row = load_for_update(session, customer_id)
    profile = row.profile
    if tag not in profile.manual_tags:
        if tag in profile.rule_tags:
            raise Conflict(f"tag {tag!r} comes from a tag rule; change the rule instead")
        raise NotFound("the customer has no such tag")
    before = public_slice(profile)
    profile.manual_tags = [t for t in profile.manual_tags if t != tag]
    repo = ProfileRepository(session)
    repo.set_tags(row.profile_id, "manual", profile.manual_tags)
    repo.audit(
        at=utcnow(), actor=actor, action="untag", subject=row.profile_id, detail={"removed": tag}
    )
    save_edited(session, row, before, settings)
    return row


def create_tag_rule(
    session: Session, tag: str, rule: dict[str, Any], description: str | None, settings: Settings
) -> dict[str, Any]:
    """Store a rule and apply it to every existing profile (in pages of 500)."""
    repo = ProfileRepository(session)
    if any(r["tag"] == tag for r in repo.tag_rules()):
        raise Conflict(f"a rule for tag {tag!r} exists; delete it first")
    row = {
        "rule_id": str(uuid.uuid4()),
        "tag": tag,
        "rule": rule,
        "description": description,
        "created_at": utcnow(),
    }
    repo.add_tag_rule(row)
    reapply_rules(session, settings)
    return row


def delete_tag_rule(session: Session, rule_id: str, settings: Settings) -> None:
    if ProfileRepository(session).delete_tag_rule(rule_id) is None:
        raise NotFound(f"no tag rule {rule_id}")
    reapply_rules(session, settings)


def reapply_rules(session: Session, settings: Settings) -> int:
    """Re-evaluate every tag rule on every profile; returns how many profiles changed."""
    repo = ProfileRepository(session)
    book = RuleBook(repo.tag_rules())
    after: str | None = None
    changed = 0
    now = utcnow()
    while True:
        ids = repo.all_profile_ids(after, 500)
        if not ids:
            return changed
        after = ids[-1]
        lock_profiles(session, ids)
        profiles = {pid: row.profile for pid, row in repo.profiles(ids).items()}
        before = {pid: (list(p.rule_tags), public_slice(p)) for pid, p in profiles.items()}
        refresh_rule_tags(repo, book, profiles, settings)
        changed_now = {}
        for pid, profile in profiles.items():
            if profile.rule_tags != before[pid][0]:
                changed_now[pid] = profile
                if public_slice(profile) != before[pid][1]:
                    publish_updated(session, pid, profile)
        repo.update_profiles(changed_now, now)
        changed += len(changed_now)


def tag_counts(session: Session) -> list[tuple[str, int, int, int]]:
    return ProfileRepository(session).tag_counts()


def tag_rules(session: Session) -> list[dict[str, Any]]:
    return ProfileRepository(session).tag_rules()
