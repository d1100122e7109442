"""Rate limits: per API key (per-scope defaults, a managed key's own limit) and on failed
authentication per client address; 429 problems with Retry-After and RateLimit-* headers,
on ordinary routes and on the fast lane alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from starlette.responses import Response

from shared.api import build_app, require
from shared.apikeys import ApiKeyState, KeyDirectory, compose_key, hash_secret
from shared.config import ServiceSettings
from shared.db import make_metadata
from shared.events import utcnow
from shared.ratelimit import RateLimiter, TooManyRequests
from shared.runtime import ServiceRuntime
from tests.conftest import api_client

ADMIN = "admin-key"
READER = "reader-key"
WRITER = "writer-key"
JSON_BODY = {"content-type": "application/json"}


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "demo"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = DemoSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        api_key=ADMIN,
        api_keys={READER: ["demo:read"], WRITER: ["demo:write"]},
        rate_limits={"default": "3/minute", "demo:write": "5/minute"},
        failed_auth_limit="4/minute",
    )
    runtime = ServiceRuntime(settings, tmp_path / "no-migrations")
    make_metadata().create_all(runtime.db.engine)
    router = APIRouter(prefix="/v1")

    @router.get("/things", dependencies=[require("demo:read")])
    def things() -> list[str]:
        """List things."""
        return []

    @router.post("/fast", status_code=202, dependencies=[require("demo:write")])
    async def fast(request: Request) -> Response:
        """Accept (served by the fast lane)."""
        return Response(b"{}", status_code=202, media_type="application/json")

    app = build_app(
        runtime=runtime,
        title="demo",
        description="demo",
        routers=[router],
        start_runtime=False,
        fast_routes=[("POST", "/v1/fast")],
    )
    with api_client(app) as test_client:
        yield test_client


def assert_rate_limited(response: object, limit: int) -> None:
    assert response.status_code == 429  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/rate-limited")  # type: ignore[attr-defined]
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["ratelimit-limit"] == str(limit)
    assert headers["ratelimit-remaining"] == "0"
    assert 1 <= int(headers["ratelimit-reset"]) <= 60


def test_a_key_over_its_scope_default_gets_429_and_others_go_on(client: TestClient) -> None:
    for _ in range(3):
        assert client.get("/v1/things", headers={"X-API-Key": READER}).status_code == 200
    assert_rate_limited(client.get("/v1/things", headers={"X-API-Key": READER}), 3)
    # the admin key has no limit by default, and the limit is per key
    for _ in range(10):
        assert client.get("/v1/things", headers={"X-API-Key": ADMIN}).status_code == 200


def test_the_fast_lane_counts_requests_against_the_scope_limit(client: TestClient) -> None:
    for _ in range(5):
        assert (
            client.post(
                "/v1/fast", content=b"x", headers={"X-API-Key": WRITER, **JSON_BODY}
            ).status_code
            == 202
        )
    assert_rate_limited(
        client.post("/v1/fast", content=b"x", headers={"X-API-Key": WRITER, **JSON_BODY}), 5
    )


def test_a_managed_key_with_its_own_limit(client: TestClient) -> None:
    directory: KeyDirectory = client.app.state.key_directory  # type: ignore[attr-defined]
    directory.apply(
        ApiKeyState(
            key_id="k1",
            name="batch job",
            scopes=["demo:read"],
            secret_hash=hash_secret("s3cret"),
            created_at=utcnow(),
            rate_limit="2/minute",
        )
    )
    key = {"X-API-Key": compose_key("k1", "s3cret")}
    assert [client.get("/v1/things", headers=key).status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(client.get("/v1/things", headers=key), 2)


def test_failed_authentication_is_limited_per_address(client: TestClient) -> None:
    for _ in range(4):
        assert client.get("/v1/things", headers={"X-API-Key": "guess"}).status_code == 401
    assert_rate_limited(client.get("/v1/things", headers={"X-API-Key": "guess"}), 4)
    # the address is blocked for the window, whatever key it tries next (no oracle)
    assert_rate_limited(client.get("/v1/things", headers={"X-API-Key": ADMIN}), 4)
    assert_rate_limited(client.get("/v1/things"), 4)


def test_limit_for_picks_the_most_generous_matching_scope() -> None:
    limiter = RateLimiter({"default": "10/minute", "a:write": "100/second", "*": ""}, "5/minute")
    assert str(limiter.limit_for({"b:read"})) == str(limiter.per_scope["default"])
    assert limiter.limit_for({"b:read", "a:write"}) is limiter.per_scope["a:write"]
    assert limiter.limit_for({"*"}) is None
    assert str(limiter.limit_for({"a:write"}, override="7/hour")).startswith("7 per 1 hour")
    assert limiter.limit_for({"a:write"}, override="unlimited") is None


def test_counting_starts_no_expiry_threads_and_windows_still_expire() -> None:
    import threading
    import time as clock

    limiter = RateLimiter({"default": "3/second"}, "5/minute")
    limit = limiter.limit_for({"x:read"})
    clock.sleep(0.05)  # the one-shot timer MemoryStorage starts when created has ended
    before = threading.active_count()
    for _ in range(3):
        limiter.hit_key("k", limit)
    assert threading.active_count() <= before  # MemoryStorage would start a timer thread
    with pytest.raises(TooManyRequests):
        limiter.hit_key("k", limit)
    clock.sleep(1.1)  # the window ends: counting starts again
    limiter.hit_key("k", limit)
    assert threading.active_count() <= before
