"""An operator's edits: fields (PATCH) and the contact policy. Flush, never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.profile import registration
from services.profile.config import Settings
from services.profile.documents import (
    KIND_OF_FIELD,
    normalize_contact,
    public_slice,
    publish_policy,
    save_edited,
)
from services.profile.domain import CONTACT_FIELDS, OPERATOR, iso
from services.profile.facts import (
    address_of,
    clear_contacts,
    clear_fact,
    normalised_address,
    observe,
    replace_contacts,
    verified_contacts,
)
from services.profile.identity import resolve_identity
from services.profile.locking import load_for_update
from services.profile.normalize import normalize_text
from services.profile.reads import load
from services.profile.repository import ProfileRepository, ProfileRow
from shared.errors import ValidationProblem
from shared.events import ContactPolicy, utcnow


def patch_profile(
    session: Session, customer_id: str, changes: dict[str, Any], actor: str, settings: Settings
) -> ProfileRow:
    """An operator's edit: each field given wins over derived data; ``null`` clears it."""
    row = load_for_update(session, customer_id)
    profile = row.profile
    before = public_slice(profile)
    seen_at = iso(utcnow())
    verified_raw = set(changes.pop("verified", None) or [])
    for name, value in changes.items():
        if name in CONTACT_FIELDS:
            if value is None:
                clear_contacts(profile, name)
                continue
            normalised = []
            verified = set()
            for raw in value:
                clean = normalize_contact(name, raw, settings)
                if clean is None:
                    raise ValidationProblem(f"{raw!r} is not a valid {name[:-1]}")
                normalised.append(clean)
                if raw in verified_raw or clean in verified_raw:
                    verified.add(clean)
            replace_contacts(profile, name, normalised, verified, seen_at)
            _index_contacts(session, row.profile_id, KIND_OF_FIELD[name], normalised, verified)
        elif value is None:
            clear_fact(profile, name)
        else:
            if name == "address":
                value = address_of(normalised_address(value))
            elif isinstance(value, str):
                value = normalize_text(value)
            observe(profile, name, value, OPERATOR, seen_at)
    ProfileRepository(session).audit(
        at=utcnow(),
        actor=actor,
        action="patch",
        subject=row.profile_id,
        detail={"fields": sorted(changes)},
    )
    save_edited(session, row, before, settings)
    for kind_field in ("mobiles", "emails"):
        kind = KIND_OF_FIELD[kind_field]
        if kind in settings.merge_on and kind_field in changes and changes[kind_field]:
            for value in verified_contacts(profile, kind_field):
                resolve_identity(session, kind, value, settings)
    return load(session, customer_id)


def _index_contacts(
    session: Session, customer_id: str, kind: str, values: list[str], verified: set[str]
) -> None:
    repo = ProfileRepository(session)
    known = repo.contact_points([(kind, v) for v in values])
    repo.insert_contact_points(
        [
            {"kind": kind, "value": v, "customer_id": customer_id, "verified": v in verified}
            for v in values
            if (kind, v, customer_id) not in known
        ]
    )
    repo.verify_contact_points(
        [
            (kind, v, customer_id)
            for v in values
            if v in verified and known.get((kind, v, customer_id)) is False
        ]
    )


def set_contact_policy(
    session: Session, customer_id: str, policy: dict[str, Any], actor: str
) -> ContactPolicy:
    """Replace the contact policy; published as ``profile.contact_policy_changed``. A
    customer profile has not seen yet is registered (``registration``)."""
    row = registration.load_or_register(session, customer_id)
    now = utcnow()
    stored = dict(policy)
    stored.pop("customer_id", None)
    stored["updated_at"] = iso(now)
    for consent in (stored.get("channels") or {}).values():
        if consent.get("at") is None:
            consent["at"] = iso(now)
        if consent.get("source") is None:
            consent["source"] = actor
    row.profile.policy = stored
    repo = ProfileRepository(session)
    repo.update_profiles({row.profile_id: row.profile}, now)
    repo.audit(
        at=now,
        actor=actor,
        action="contact_policy",
        subject=row.profile_id,
        detail={"policy": stored},
    )
    return publish_policy(session, row.profile_id, stored)
