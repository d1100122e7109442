"""Facts and contacts of a profile, with their provenance (pure rules, no I/O).

Every fact knows its ``source`` and when it was last seen (``seen_at``). Per fact the
newest observation wins; an operator's edit (source ``operator``) wins over any derived
observation until the operator changes it again. A losing value from another source is
kept as an alternative: that is what the data-quality block reports as a conflict.
"""

from __future__ import annotations

from typing import Any

from services.profile.domain import OPERATOR, Alternative, ContactEntry, Profile, Provenance
from shared import regions

ADDRESS_KEYS = ("province", "city", "district", "address", "postal_code")
MAX_ALTERNATIVES = 3


def observe(profile: Profile, field: str, value: Any, source: str, seen_at: str) -> bool:
    """Record one observation of a single-valued fact; True if the profile's value changed."""
    if value is None or value == "" or value == {}:
        return False
    operator = source == OPERATOR
    facts = profile.facts
    current = facts.get(field)
    prov = profile.provenance.get(field)
    if prov is None or current is None:
        facts[field] = value
        # (values seen only as alternatives before, e.g. an unpaid order's address, stay so)
        kept = [a for a in prov.alternatives if a.value != value] if prov else []
        profile.provenance[field] = Provenance(source, seen_at, kept)
        return True
    if value == current:
        if seen_at > prov.seen_at and (operator or prov.source != OPERATOR):
            prov.seen_at = seen_at
            prov.source = source
        return False
    loses = (prov.source == OPERATOR and not operator) or (not operator and seen_at < prov.seen_at)
    if loses:
        if source != prov.source:
            _add_alternative(prov, value, source, seen_at)
        return False
    if source != prov.source:
        _add_alternative(prov, current, prov.source, prov.seen_at)
    prov.alternatives = [a for a in prov.alternatives if a.value != value]
    facts[field] = value
    prov.source, prov.seen_at = source, seen_at
    return True


def observe_alternative(
    profile: Profile, field: str, value: Any, source: str, seen_at: str
) -> None:
    """Record a value seen where it is no evidence of the current one (the shipping address
    of an unpaid or cancelled order): kept among the field's alternatives, never its value.
    A field known only this way has alternatives and no value (source ``None``)."""
    if value is None or value == "" or value == {} or profile.facts.get(field) == value:
        return
    prov = profile.provenance.get(field)
    if prov is None:
        prov = profile.provenance[field] = Provenance(None, "")
    _add_alternative(prov, value, source, seen_at)


def _add_alternative(prov: Provenance, value: Any, source: str | None, seen_at: str) -> None:
    alts = [a for a in prov.alternatives if a.value != value]
    alts.append(Alternative(value, source, seen_at))
    alts.sort(key=lambda a: a.seen_at, reverse=True)
    prov.alternatives = alts[:MAX_ALTERNATIVES]


def clear_fact(profile: Profile, field: str) -> None:
    profile.facts.pop(field, None)
    profile.provenance.pop(field, None)


def observe_contact(
    profile: Profile, kind: str, value: str, source: str, seen_at: str, verified: bool = False
) -> bool:
    """Record a mobile / phone / e-mail; True if it is new or newly verified."""
    if kind in profile.locked_contacts and source != OPERATOR:
        return False
    entries = profile.contacts[kind]
    entry = entries.get(value)
    if entry is None:
        entries[value] = ContactEntry(source, seen_at, verified)
        return True
    changed = verified and not entry.verified
    if seen_at > entry.seen_at:
        entry.seen_at, entry.source = seen_at, source
    entry.verified = entry.verified or verified
    return changed


def replace_contacts(
    profile: Profile, kind: str, values: list[str], verified: set[str], seen_at: str
) -> None:
    """An operator's list of one kind of contact: it replaces the derived one and wins."""
    old = profile.contacts[kind]
    profile.contacts[kind] = {
        v: ContactEntry(OPERATOR, seen_at, v in verified or (v in old and old[v].verified))
        for v in values
    }
    if kind not in profile.locked_contacts:
        profile.locked_contacts.append(kind)


def clear_contacts(profile: Profile, kind: str) -> None:
    """An operator cleared one kind of contact: derived observations fill it again."""
    profile.contacts[kind] = {}
    profile.locked_contacts = [k for k in profile.locked_contacts if k != kind]


def verified_contacts(profile: Profile, kind: str) -> list[str]:
    return [v for v, e in profile.contacts[kind].items() if e.verified]


def address_of(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    cleaned = {k: value.get(k) for k in ADDRESS_KEYS if value.get(k)}
    return cleaned or None


def normalised_address(value: dict[str, Any]) -> dict[str, Any]:
    """An address with its region normalised as ingest normalises it (``shared.regions``):
    what operators type must be found by the same search and reports as consumed data."""
    region_of = regions.normalize_region(
        value.get("province"),
        value.get("city"),
        district=value.get("district"),
        address=value.get("address"),
    )
    return {**value, **region_of._asdict()}
