"""A profile document's stored rows, its rule tags and its published events: what every
write path (consuming, identity, editing, tags) shares. Flush, never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.profile import domain
from services.profile.config import Settings
from services.profile.normalize import normalize_email, normalize_text
from services.profile.repository import SCORE_KEYS, ProfileRepository, ProfileRow, dumps
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


def public_slice(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What ProfileUpdatedPayload carries: tags, province, city, timezone."""
    province, city = domain.region(doc)
    return (tuple(domain.tags_of(doc)), province, city, doc["f"].get("timezone"))


def normalize_contact(kind_field: str, raw: str, settings: Settings) -> str | None:
    """A contact in its stored form (e-mail, E.164 mobile; a phone that is not one is kept
    as cleaned text), or None if it is not one."""
    if kind_field == "emails":
        return normalize_email(raw)
    value = phone_e164(raw, settings.default_region)
    if value is None and kind_field == "phones":
        value = normalize_text(raw)
    return value


def profile_row(profile_id: str, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The profiles row of a document (its scores part is stored apart: scores_row)."""
    province, city = domain.region(doc)
    # the scores part leaves the document for the dump and comes back (cheaper than a copy
    # of the document: the consumer writes thousands per batch)
    part = {k: doc.pop(k) for k in SCORE_KEYS if k in doc}
    try:
        stored = dumps(doc)
    finally:
        doc.update(part)
    return {
        "profile_id": profile_id,
        "doc": stored,
        "province": province,
        "city": city,
        "updated_at": now,
    }


def scores_row(profile_id: str, part: dict[str, Any]) -> dict[str, Any]:
    scores = part["scores"] or {}
    return {
        "profile_id": profile_id,
        "scores": dumps({k: part[k] for k in SCORE_KEYS}),
        "lifecycle_stage": scores.get("lifecycle_stage"),
        "rfm_segment": scores.get("rfm_segment"),
    }


def updated_event(profile_id: str, doc: dict[str, Any]) -> ProfileUpdatedEvent:
    tags, province, city, timezone = public_slice(doc)
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


def publish_updated(session: Session, profile_id: str, doc: dict[str, Any]) -> None:
    add_to_outbox(session, topics.PROFILES, updated_event(profile_id, doc))


def refresh_rule_tags(
    repo: ProfileRepository,
    book: RuleBook,
    docs: dict[str, dict[str, Any]],
    settings: Settings,
) -> None:
    """Re-evaluate tag rules on changed profiles; keep the tag index in step."""
    added: list[tuple[str, str, str]] = []
    removed: list[tuple[str, str, str]] = []
    for pid, doc in docs.items():
        new = book.tags_for(doc, settings)
        old = doc["rule_tags"]
        if new != old:
            added += [(pid, t, "rule") for t in set(new) - set(old)]
            removed += [(pid, t, "rule") for t in set(old) - set(new)]
            doc["rule_tags"] = new
    repo.change_tags(added, removed)


def save_edited(
    session: Session, row: ProfileRow, before: tuple[Any, ...], settings: Settings
) -> None:
    """Write an edited profile (its rule tags re-evaluated); ``profile.updated`` if its
    public slice moved from ``before``."""
    repo = ProfileRepository(session)
    refresh_rule_tags(repo, RuleBook(repo.tag_rules()), {row.profile_id: row.doc}, settings)
    repo.update_profiles([profile_row(row.profile_id, row.doc, utcnow())])
    if public_slice(row.doc) != before:
        publish_updated(session, row.profile_id, row.doc)


def publish_policy(session: Session, profile_id: str, policy: dict[str, Any]) -> ContactPolicy:
    """``profile.contact_policy_changed`` with the profile's stored policy."""
    model = ContactPolicy.model_validate({**policy, "customer_id": profile_id})
    add_to_outbox(
        session,
        topics.PROFILES,
        ContactPolicyChangedEvent(source=SOURCE, key=profile_id, data=model),
    )
    return model
