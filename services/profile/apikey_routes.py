"""API-key administration (profile is the admin home): thin routes over apikeys.py.

A change is committed with its outbox record, applied to this process's key directory at
once, and reaches the other services through the key topic within about a second.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from services.profile import apikeys
from services.profile.apikey_schemas import (
    ApiKeyAuditRead,
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyRead,
    ApiKeyRotate,
)
from services.profile.runtime import ProfileRuntime, RuntimeDep
from shared.api import Caller, require
from shared.apikeys import ApiKeyState, KeyDirectory, public_view
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])

KEY_ADMIN = [require("keys:admin")]


def _publish(request: Request, runtime: ProfileRuntime, state: ApiKeyState) -> None:
    directory: KeyDirectory = request.app.state.key_directory
    directory.apply(state)
    runtime.relay.notify()


@router.post(
    "", response_model=ApiKeyIssued, status_code=status.HTTP_201_CREATED, dependencies=KEY_ADMIN
)
def create_api_key(
    body: ApiKeyCreate,
    request: Request,
    runtime: RuntimeDep,
    response: Response,
    principal: Caller,
) -> ApiKeyIssued:
    """Create a key; the answer holds the key itself, shown only this once (never stored,
    not even for an ``Idempotency-Key``: a repeat is ``409 idempotency-secret-not-replayed``
    naming the key in ``location``). Audited."""
    with runtime.db.unit_of_work() as session:
        state, key = apikeys.create_key(
            session,
            name=body.name,
            scopes=body.scopes,
            expires_at=body.expires_at,
            rate_limit=body.rate_limit,
            actor=principal.key_id,
        )
    _publish(request, runtime, state)
    _secret_once(response, state)
    return ApiKeyIssued(**public_view(state), api_key=key)


def _secret_once(response: Response, state: ApiKeyState) -> None:
    """Mark an answer holding a secret: no cache and no idempotency record keeps it."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"{router.prefix}/{state.key_id}"


@router.get("", response_model=Page[ApiKeyRead], dependencies=KEY_ADMIN)
def list_api_keys(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ApiKeyRead]:
    """Every managed key (never a secret), with the last time it was used (cursor paged)."""
    with runtime.db.sessions() as session:
        return apikeys.keys_page(session, cursor, limit)


@router.get("/{key_id}", response_model=ApiKeyRead, dependencies=KEY_ADMIN)
def get_api_key(key_id: str, runtime: RuntimeDep) -> ApiKeyRead:
    """One managed key (never its secret)."""
    with runtime.db.sessions() as session:
        state, used = apikeys.get_key(session, key_id)
    return ApiKeyRead(**public_view(state, used))


@router.post("/{key_id}/rotate", response_model=ApiKeyIssued, dependencies=KEY_ADMIN)
def rotate_api_key(
    key_id: str,
    body: ApiKeyRotate,
    request: Request,
    runtime: RuntimeDep,
    response: Response,
    principal: Caller,
) -> ApiKeyIssued:
    """A new secret for the key (shown once, never stored: see create); the old one works
    for ``grace_seconds``. Audited."""
    with runtime.db.unit_of_work() as session:
        state, key = apikeys.rotate_key(
            session, key_id, grace_seconds=body.grace_seconds, actor=principal.key_id
        )
    _publish(request, runtime, state)
    _secret_once(response, state)
    return ApiKeyIssued(**public_view(state), api_key=key)


@router.post("/{key_id}/revoke", response_model=ApiKeyRead, dependencies=KEY_ADMIN)
def revoke_api_key(
    key_id: str, request: Request, runtime: RuntimeDep, principal: Caller
) -> ApiKeyRead:
    """Revoke the key: every service refuses it within seconds. Audited."""
    with runtime.db.unit_of_work() as session:
        state = apikeys.revoke_key(session, key_id, actor=principal.key_id)
    _publish(request, runtime, state)
    return ApiKeyRead(**public_view(state))


@router.delete("/{key_id}", response_model=ApiKeyRead, dependencies=KEY_ADMIN)
def delete_api_key(
    key_id: str, request: Request, runtime: RuntimeDep, principal: Caller
) -> ApiKeyRead:
    """The same as revoke (the record stays, for the audit trail)."""
    return revoke_api_key(key_id, request, runtime, principal)


@router.get("/{key_id}/audit", response_model=ApiKeyAuditRead, dependencies=KEY_ADMIN)
def api_key_audit(key_id: str, runtime: RuntimeDep) -> ApiKeyAuditRead:
    """Who created, rotated and revoked the key, and when."""
    with runtime.db.sessions() as session:
        entries = apikeys.key_audit(session, key_id)
    return ApiKeyAuditRead.model_validate({"key_id": key_id, "audit": entries})
