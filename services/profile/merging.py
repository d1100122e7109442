"""Folding one profile into another (pure; the use case is ``identity.merge_profiles``)."""

from __future__ import annotations

from typing import Any

from services.profile.domain import CONTACT_FIELDS, Profile
from services.profile.facts import observe, observe_alternative, observe_contact
from services.profile.transactions import add_interactions


def merge_into(survivor: Profile, other: Profile) -> None:
    """Fold ``other`` into ``survivor`` (facts by provenance, counters added, tags united).
    The transaction facet is rebuilt by the caller from the orders of both."""
    for name, prov in other.provenance.items():
        value = other.facts.get(name)
        if prov.source is not None:
            observe(survivor, name, value, prov.source, prov.seen_at)
        for alt in prov.alternatives:
            if alt.source is not None:
                observe_alternative(survivor, name, alt.value, alt.source, alt.seen_at)
    for kind in CONTACT_FIELDS:
        if kind in survivor.locked_contacts:
            continue
        for value, entry in other.contacts[kind].items():
            observe_contact(survivor, kind, value, entry.source, entry.seen_at, entry.verified)
    add_interactions(survivor.interactions, other.interactions)
    if survivor.scores.snapshot is None and other.scores.snapshot is not None:
        survivor.scores = other.scores
    survivor.manual_tags = sorted(set(survivor.manual_tags) | set(other.manual_tags))
    survivor.policy = merge_policies(survivor.policy, other.policy)
    survivor.first_seen = min(survivor.first_seen, other.first_seen)


def merge_policies(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stricter of two contact policies: a channel refused by either stays refused."""
    if a is None or b is None:
        return a or b
    channels = dict(b.get("channels") or {})
    for channel, consent in (a.get("channels") or {}).items():
        theirs = channels.get(channel)
        if theirs is None or theirs["consented"]:
            channels[channel] = consent
    limits = [x for x in (a.get("max_contacts"), b.get("max_contacts")) if x is not None]
    return {
        **a,
        "channels": channels,
        "do_not_disturb": bool(a.get("do_not_disturb") or b.get("do_not_disturb")),
        "quiet_hours": a.get("quiet_hours") or b.get("quiet_hours"),
        "max_contacts": min(limits) if limits else None,
    }
