"""A profile's rule tags and its published events: what every write path (consuming,
identity, editing, tags) shares. Flush, never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.profile.config import Settings
from services.profile.domain import Profile
from services.profile.normalize import normalize_email, normalize_text
from services.profile.repository import ProfileRepository, ProfileRow
from services.profile.rules import RuleBook
from shared import topics
from shared.bus import add_to_outbox
from shared.events import (
    ContactPolicy,
    ContactPolicyChangedEvent,
    ProfileUpdatedEvent,
    ProfileUpdatedPayload,
    utcnow,
)
from shared.phones import phone_e164

SOURCE = "profile"
KIND_OF_FIELD = {"mobiles": "mobile", "emails": "email", "phones": "phone"}


def public_slice(profile: Profile) -> tuple[Any, ...]:
    """What ProfileUpdatedPayload carries: tags, province, city, timezone."""
    province, city = profile.region()
    return (tuple(profile.tags()), province, city, profile.facts.get("timezone"))


def normalize_contact(kind_field: str, raw: str, settings: Settings) -> str | None:
    """A contact in its stored form (e-mail, E.164 mobile; a phone that is not one is kept
    as cleaned text), or None if it is not one."""
    if kind_field == "emails":
        return normalize_email(raw)
    value = phone_e164(raw, settings.default_region)
    if value is None and kind_field == "phones":
        value = normalize_text(raw)
    return value


def updated_event(profile_id: str, profile: Profile) -> ProfileUpdatedEvent:
    tags, province, city, timezone = public_slice(profile)
    return ProfileUpdatedEvent(
        source=SOURCE,
        key=profile_id,
        data=ProfileUpdatedPayload(
            customer_id=profile_id,
            tags=list(tags),
            province=province,
            city=city,
            timezone=timezone,
        ),
    )


def publish_updated(session: Session, profile_id: str, profile: Profile) -> None:
    add_to_outbox(session, topics.PROFILES, updated_event(profile_id, profile))


def refresh_rule_tags(
    repo: ProfileRepository,
    book: RuleBook,
    profiles: dict[str, Profile],
    settings: Settings,
) -> None:
    """Re-evaluate tag rules on changed profiles; keep the tag index in step."""
    added: list[tuple[str, str, str]] = []
    removed: list[tuple[str, str, str]] = []
    for pid, profile in profiles.items():
        new = book.tags_for(profile, settings)
        old = profile.rule_tags
        if new != old:
            added += [(pid, t, "rule") for t in set(new) - set(old)]
            removed += [(pid, t, "rule") for t in set(old) - set(new)]
            profile.rule_tags = new
    repo.change_tags(added, removed)


def save_edited(
    session: Session, row: ProfileRow, before: tuple[Any, ...], settings: Settings
) -> None:
    """Write an edited profile (its rule tags re-evaluated); ``profile.updated`` if its
    public slice moved from ``before``."""
    repo = ProfileRepository(session)
    refresh_rule_tags(repo, RuleBook(repo.tag_rules()), {row.profile_id: row.profile}, settings)
    repo.update_profiles({row.profile_id: row.profile}, utcnow())
    if public_slice(row.profile) != before:
        publish_updated(session, row.profile_id, row.profile)


def publish_policy(session: Session, profile_id: str, policy: dict[str, Any]) -> ContactPolicy:
    """``profile.contact_policy_changed`` with the profile's stored policy."""
    model = ContactPolicy.model_validate({**policy, "customer_id": profile_id})
    add_to_outbox(
        session,
        topics.PROFILES,
        ContactPolicyChangedEvent(source=SOURCE, key=profile_id, data=model),
    )
    return model
