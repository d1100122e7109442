"""Request rate limits: per API key (defaults per scope) and on failed authentication per
client address. Built on the ``limits`` library (in-memory windows, per
process: with N replicas of a service a key gets N times its limit there).

A key's limit is its own (``rate_limit`` on a managed key) or else the most generous of
the per-scope defaults its scopes match (``CRM_RATE_LIMITS``, e.g.
``{"ingest:write": "60000/minute", "default": "1200/minute"}``); ``"*"`` names the limit
of the admin key, none by default. A refusal is a 429 problem with ``Retry-After`` and
the ``RateLimit-Limit`` / ``RateLimit-Remaining`` / ``RateLimit-Reset`` headers
(draft-ietf-httpapi-ratelimit-headers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from shared.errors import ProblemError

#: used when no scope of a key has a configured default
DEFAULT_LIMIT_KEY = "default"
UNLIMITED = ("", "none", "unlimited")


class InlineExpiryMemoryStorage(MemoryStorage):
    """``limits``' in-memory storage without its expiry thread.

    ``MemoryStorage`` starts a ``threading.Timer`` (10 ms) on every hit when none is alive,
    so under steady traffic it starts a thread about every 10 ms and that thread sweeps
    every key while holding the GIL: measured on the fast lane it cost far more than the
    counting itself. Counters need no sweep to be right (``get`` drops an expired window),
    so here the sweep runs inline, on the request's thread, at most once a second: it only
    frees memory. Overrides the private hook ``MemoryStorage.__schedule_expiry`` (limits 5.x;
    the version is pinned and tests/shared/test_ratelimit.py checks no thread starts).
    """

    SWEEP_EVERY_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # the hook, name-mangled
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY_SECONDS
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


class TooManyRequests(ProblemError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, headers: dict[str, str]) -> None:
        super().__init__(detail)
        self.headers = headers


def _parse(text: str) -> RateLimitItem | None:
    return None if text.strip().lower() in UNLIMITED else parse(text)


class RateLimiter:
    """Counts requests per API key and failed authentications per client address."""

    def __init__(self, per_scope: Mapping[str, str], failed_auth: str) -> None:
        self.storage = InlineExpiryMemoryStorage()
        # per key, on every request: a fixed window costs ~3 us a hit here, half a sliding
        # window counter's ~6 us (bench/bench_ratelimit.py); it lets a key send up to twice
        # its limit across a window boundary, which a per-minute quota can live with
        self.strategy = FixedWindowRateLimiter(self.storage)
        # failed authentication is rare and must not burst: an exact moving window
        self.auth_strategy = MovingWindowRateLimiter(self.storage)
        self.per_scope = {scope: _parse(limit) for scope, limit in per_scope.items()}
        self.failed_auth = _parse(failed_auth)
        self._memo: dict[tuple[frozenset[str], str | None], RateLimitItem | None] = {}

    def limit_for(self, scopes: Iterable[str], override: str | None = None) -> RateLimitItem | None:
        """The limit of a key with these scopes (None: unlimited); memoised per scope set."""
        memo_key = (frozenset(scopes), override)
        if memo_key not in self._memo:
            self._memo[memo_key] = self._resolve(memo_key[0], override)
        return self._memo[memo_key]

    def _resolve(self, scopes: frozenset[str], override: str | None) -> RateLimitItem | None:
        if override:
            return _parse(override)
        if "*" in scopes:  # the admin key: unlimited unless "*" is configured
            return self.per_scope.get("*")
        matched = [self.per_scope[s] for s in scopes if s in self.per_scope]
        if not matched:
            return self.per_scope.get(DEFAULT_LIMIT_KEY)
        if any(m is None for m in matched):
            return None
        return max((m for m in matched if m is not None), key=lambda m: m.amount / m.get_expiry())

    def hit_key(self, key_id: str, limit: RateLimitItem | None) -> None:
        """Count one request of a key; raises :class:`TooManyRequests` over its limit."""
        if limit is not None and not self.strategy.hit(limit, "key", key_id):
            raise TooManyRequests(
                f"this API key may make {limit.amount} request(s) per "
                f"{limit.multiples} {limit.GRANULARITY.name}",
                self._headers(limit, "key", key_id),
            )

    def check_client(self, client: str) -> None:
        """Refuse a client address that failed authentication too often (before any check)."""
        limit = self.failed_auth
        if limit is not None and not self.auth_strategy.test(limit, "auth-failure", client):
            raise TooManyRequests(
                "too many requests with a missing or invalid API key from this address",
                self._headers(limit, "auth-failure", client, strategy=self.auth_strategy),
            )

    def failed(self, client: str) -> None:
        """Count one failed authentication of a client address."""
        if self.failed_auth is not None:
            self.auth_strategy.hit(self.failed_auth, "auth-failure", client)

    def _headers(
        self,
        limit: RateLimitItem,
        *identifiers: str,
        strategy: FixedWindowRateLimiter | MovingWindowRateLimiter | None = None,
    ) -> dict[str, str]:
        stats = (strategy or self.strategy).get_window_stats(limit, *identifiers)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return {
            "Retry-After": str(reset),
            "RateLimit-Limit": str(limit.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{limit.amount};w={limit.get_expiry()}",
        }
