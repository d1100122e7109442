"""Profiles registered before their first data: consent and tags collected at sign-up.

A shop collects a contact policy (and an operator may tag a customer) before the customer's
first order reaches profile. ``PUT .../contact-policy`` and ``POST .../tags`` therefore
register an empty profile for a customer id profile has not seen: the policy and tags are
kept on it, published as usual (campaign keeps the policy from ``crm.profiles.v1`` whatever
it knows of the customer), and the customer's data joins this profile when it arrives (the
consumer finds it by its id; ``first_seen`` moves back to the data's own time).

An erased customer id is not registered again (its tombstone stays the last word).
Flush, never commit (the route's unit of work commits).
"""

from __future__ import annotations

import unicodedata

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.profile.domain import Profile, iso
from services.profile.locking import load_for_update
from services.profile.repository import ProfileRepository, ProfileRow
from shared.erasure import tombstone_key
from shared.errors import Conflict, NotFound, ValidationProblem
from shared.events import utcnow

#: as ingest's ids (``services.ingest.validation``)
MAX_ID_LENGTH = 128


def _check_customer_id(customer_id: str) -> None:
    text = customer_id.strip()
    if (
        not text
        or text != customer_id
        or len(text) > MAX_ID_LENGTH
        or not text.isprintable()
        or any(unicodedata.category(ch) == "Cf" for ch in text)
    ):
        raise ValidationProblem(
            "not a customer id",
            errors=[
                {
                    "field": "customer_id",
                    "code": "customer_id.invalid",
                    "message": "a customer id is 1-128 printable characters without "
                    "surrounding blanks or format characters",
                }
            ],
        )


def load_or_register(session: Session, customer_id: str) -> ProfileRow:
    """The customer's profile, locked for this transaction (``locking.load_for_update``);
    an empty one is registered first if profile has not seen the id."""
    try:
        return load_for_update(session, customer_id)
    except NotFound:
        pass
    _check_customer_id(customer_id)
    repo = ProfileRepository(session)
    if repo.tombstones([tombstone_key(customer_id)]):
        raise Conflict("the customer was erased", slug="erased")
    now = utcnow()
    try:
        with session.begin_nested():
            repo.insert_profiles({customer_id: Profile(first_seen=iso(now))}, now)
            repo.insert_aliases([{"customer_id": customer_id, "profile_id": customer_id}])
    except IntegrityError:
        pass  # registered by a concurrent request (or the consumer) meanwhile
    return load_for_update(session, customer_id)
