"""Managed API keys: create, list, rotate, revoke (use cases; flush, never commit).

Every change is audited (subject ``api-key:<key id>``) and its new record queued in the
outbox for the compacted key topic, which every service follows (``shared.apikeys``).
The secret is returned once, by create and rotate, and stored only as a hash.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from services.profile.apikey_repository import ApiKeyRepository
from services.profile.apikey_schemas import ApiKeyRead
from services.profile.repository import ProfileRepository
from shared.apikeys import (
    APIKEYS_TOPIC,
    ApiKeyRecordedEvent,
    ApiKeyState,
    compose_key,
    hash_secret,
    new_key_id,
    new_secret,
    public_view,
)
from shared.bus import add_to_outbox
from shared.errors import Conflict, NotFound
from shared.events import utcnow
from shared.pagination import Page, decode_cursor, encode_cursor


def audit_subject(key_id: str) -> str:
    return f"api-key:{key_id}"


def _record(session: Session, state: ApiKeyState, actor: str, action: str, detail: Any) -> None:
    ProfileRepository(session).audit(
        at=utcnow(), actor=actor, action=action, subject=audit_subject(state.key_id), detail=detail
    )
    add_to_outbox(
        session, APIKEYS_TOPIC, ApiKeyRecordedEvent(source="profile", key=state.key_id, data=state)
    )


def create_key(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    rate_limit: str | None,
    actor: str,
) -> tuple[ApiKeyState, str]:
    """A new key and the key string to hand to its holder (shown this once)."""
    key_id, secret = new_key_id(), new_secret()
    state = ApiKeyState(
        key_id=key_id,
        name=name,
        scopes=sorted(set(scopes)),
        secret_hash=hash_secret(secret),
        created_at=utcnow(),
        expires_at=expires_at,
        rate_limit=rate_limit,
    )
    ApiKeyRepository(session).add(state)
    _record(
        session,
        state,
        actor,
        "api_key.created",
        {"name": name, "scopes": state.scopes, "expires_at": expires_at, "rate_limit": rate_limit},
    )
    session.flush()
    return state, compose_key(key_id, secret)


def _load(session: Session, key_id: str) -> ApiKeyState:
    state = ApiKeyRepository(session).get(key_id, for_update=True)
    if state is None:
        raise NotFound(f"no API key {key_id}")
    return state


def rotate_key(
    session: Session, key_id: str, *, grace_seconds: int, actor: str
) -> tuple[ApiKeyState, str]:
    """A new secret for a key (same id, name and scopes); the old secret keeps working for
    ``grace_seconds`` (0: refused at once), so its holders can switch without an outage."""
    state = _load(session, key_id)
    if state.revoked_at is not None:
        raise Conflict(f"API key {key_id} is revoked; create a new one", slug="api-key-revoked")
    secret = new_secret()
    now = utcnow()
    state = state.model_copy(
        update={
            "secret_hash": hash_secret(secret),
            "previous_secret_hash": state.secret_hash if grace_seconds else None,
            "previous_valid_until": now + timedelta(seconds=grace_seconds)
            if grace_seconds
            else None,
            "version": state.version + 1,
        }
    )
    ApiKeyRepository(session).save(state)
    _record(session, state, actor, "api_key.rotated", {"grace_seconds": grace_seconds})
    session.flush()
    return state, compose_key(key_id, secret)


def revoke_key(session: Session, key_id: str, *, actor: str) -> ApiKeyState:
    """Revoke a key (every service refuses it within seconds); revoking twice is a no-op."""
    state = _load(session, key_id)
    if state.revoked_at is not None:
        return state
    state = state.model_copy(update={"revoked_at": utcnow(), "version": state.version + 1})
    ApiKeyRepository(session).save(state)
    _record(session, state, actor, "api_key.revoked", {})
    session.flush()
    return state


def list_keys(
    session: Session, after: str | None, limit: int
) -> list[tuple[ApiKeyState, datetime | None]]:
    """Up to ``limit`` keys with an id after ``after``, by key id, each with the last time
    it was seen used."""
    repository = ApiKeyRepository(session)
    states = repository.page(after, limit)
    used = repository.last_used([s.key_id for s in states])
    return [(s, used.get(s.key_id)) for s in states]


def keys_page(session: Session, cursor: str | None, limit: int) -> Page[ApiKeyRead]:
    """A page of every managed key (never a secret), by key id (cursor paginated)."""
    position = decode_cursor(cursor)
    after = str(position["after"]) if position and "after" in position else None
    rows = list_keys(session, after, limit + 1)
    items = [ApiKeyRead(**public_view(s, used)) for s, used in rows[:limit]]
    next_cursor = encode_cursor({"after": rows[limit - 1][0].key_id}) if len(rows) > limit else None
    return Page[ApiKeyRead](items=items, next_cursor=next_cursor)


def get_key(session: Session, key_id: str) -> tuple[ApiKeyState, datetime | None]:
    repository = ApiKeyRepository(session)
    state = repository.get(key_id)
    if state is None:
        raise NotFound(f"no API key {key_id}")
    return state, repository.last_used([key_id]).get(key_id)


def key_audit(session: Session, key_id: str) -> list[dict[str, Any]]:
    get_key(session, key_id)
    return ProfileRepository(session).audit_of([audit_subject(key_id)])


def note_used(session: Session, key_id: str, at: datetime) -> None:
    """A service reported the key used at ``at`` (reports arrive late and twice: max wins)."""
    ApiKeyRepository(session).note_used(key_id, at)
