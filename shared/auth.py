"""Who is calling: API keys (bootstrap keys of the environment and managed keys), scopes,
and the rate limits checked with them. Every route's ``require(...)`` dependency and the
fast lane (:class:`shared.middleware.FastLaneMiddleware`) call :func:`authorize`.

A route declares who may call it one way, in its decorator:
``dependencies=[require("profile:write")]``; one that needs to know the caller (its key id
for an audit trail, an optional scope) also takes ``caller: Caller``."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, Request

from shared.apikeys import KeyDirectory, KeyRefused
from shared.errors import Forbidden, Unauthorized
from shared.ratelimit import RateLimiter
from shared.runtime import ServiceRuntime


class Principal:
    """The caller, as identified by its API key."""

    def __init__(self, key_id: str, scopes: set[str], rate_limit: str | None = None) -> None:
        self.key_id = key_id
        self.scopes = scopes
        self.rate_limit = rate_limit

    def has(self, scope: str) -> bool:
        if "*" in self.scopes or scope in self.scopes:
            return True
        # "profile:*" grants "profile:read" and "profile:write"
        prefix = scope.split(":", 1)[0]
        return f"{prefix}:*" in self.scopes


def key_fingerprint(key: str) -> str:
    """A short id of a bootstrap key (logs, idempotency scopes), never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


_REFUSALS = {
    "unknown": "the API key is not known",
    "revoked": "the API key has been revoked",
    "expired": "the API key has expired",
}


def _identify(state: Any, key: str) -> Principal:
    """The principal of a presented key: a bootstrap key of the environment, else a managed
    key (:mod:`shared.apikeys`); raises 401 problems."""
    keys: dict[str, set[str]] = state.api_keys
    scopes = None
    for known, known_scopes in keys.items():
        # constant-time comparison: response timing must not reveal key prefixes
        if hmac.compare_digest(known.encode(), key.encode()):
            scopes = known_scopes
    if scopes is not None:
        return Principal(key_fingerprint(key), scopes)
    directory: KeyDirectory = state.key_directory
    try:
        record = directory.resolve(key)
    except KeyRefused as refused:
        raise Unauthorized(_REFUSALS[refused.reason], reason=refused.reason) from None
    return Principal(record.key_id, set(record.scopes), record.rate_limit)


def authenticate(request: Request) -> Principal:
    """The caller of ``request`` by its X-API-Key; raises 401 problems, and 429 over the
    key's rate limit or when its address failed authentication too often."""
    state = request.app.state
    runtime: ServiceRuntime = state.runtime
    if runtime.settings.auth_disabled:
        anonymous = Principal("anonymous", {"*"})
        request.state.principal = anonymous
        return anonymous
    limiter: RateLimiter = state.rate_limiter
    client = request.client.host if request.client else "unknown"
    limiter.check_client(client)
    key = request.headers.get("x-api-key")
    try:
        if not key:
            raise Unauthorized("send your API key in the X-API-Key header")
        principal = _identify(state, key)
    except Unauthorized:
        limiter.failed(client)
        raise
    limiter.hit_key(principal.key_id, limiter.limit_for(principal.scopes, principal.rate_limit))
    request.state.principal = principal
    return principal


def authorize(request: Request, scopes: Sequence[str]) -> Principal:
    """The caller of ``request`` if its API key holds every one of ``scopes``; raises 401/403."""
    principal = authenticate(request)
    missing = [s for s in scopes if not principal.has(s)]
    if missing:
        raise Forbidden(f"this call needs the scope(s): {', '.join(missing)}")
    return principal


def require(*scopes: str) -> Any:
    """A dependency that admits only API keys holding every one of ``scopes``."""

    # one flat async dependency (authenticate inline, not a nested Depends; async, so no
    # thread-pool hop): FastAPI's dependency resolution costs more than the check itself
    async def dependency(request: Request) -> Principal:
        return authorize(request, scopes)

    dependency.scopes = scopes  # type: ignore[attr-defined]  # read by FastLaneMiddleware
    return Depends(dependency)


async def current_caller(request: Request) -> Principal:
    """The caller the route's ``require(...)`` admitted (it runs first: a route's decorator
    dependencies are resolved before its parameters)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise RuntimeError("a route that takes the Caller declares require(...) too")
    return principal


#: the admitted caller, for a route that declares ``require(...)``
Caller = Annotated[Principal, Depends(current_caller)]
