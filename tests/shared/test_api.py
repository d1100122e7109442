"""The API pieces every service shares: problem+json, auth scopes, idempotency, limits, health."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from shared.api import build_app, require
from shared.config import ServiceSettings
from shared.db import make_metadata
from shared.errors import NotFound, ValidationProblem
from shared.pagination import decode_cursor, encode_cursor
from shared.runtime import ServiceRuntime
from tests.conftest import api_client

ADMIN = "admin-key"
READER = "reader-key"
ALL_PROFILE = "profile-all-key"
JSON_BODY = {"content-type": "application/json"}


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "demo"


class Thing(BaseModel):
    name: str
    size: int


def make_app(tmp_path: Path) -> tuple[FastAPI, dict[str, int]]:
    settings = DemoSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        api_key=ADMIN,
        api_keys={READER: ["demo:read"], ALL_PROFILE: ["demo:*"]},
    )
    runtime = ServiceRuntime(settings, tmp_path / "no-migrations")
    make_metadata().create_all(runtime.db.engine)
    calls = {"create": 0}
    lock = threading.Lock()
    router = APIRouter(prefix="/v1")

    @router.post("/things", status_code=201, dependencies=[require("demo:write")])
    def create(thing: Thing) -> dict[str, object]:
        """Create a thing (slowly, so concurrent repeats overlap)."""
        with lock:
            calls["create"] += 1
            number = calls["create"]
        time.sleep(0.2)
        return {"name": thing.name, "number": number}

    @router.get("/things/{name}", dependencies=[require("demo:read")])
    def read(name: str, request: Request) -> dict[str, str]:
        """Read a thing."""
        raise NotFound(f"no thing named {name}")

    @router.get("/page")
    def page(cursor: str | None = None) -> dict[str, object]:
        """Decode a cursor."""
        return {"position": decode_cursor(cursor)}

    @router.post("/fast", status_code=202, dependencies=[require("demo:write")])
    async def fast(request: Request) -> Response:
        """Echo the body (served by the fast lane)."""
        body = await request.body()
        if body == b"bad":
            raise ValidationProblem("the body is bad")
        if body == b"boom":
            raise RuntimeError("secret detail")
        calls["fast"] = calls.get("fast", 0) + 1
        return Response(b'{"echo": "%s"}' % body, status_code=202, media_type="application/json")

    app = build_app(
        runtime=runtime,
        title="demo",
        description="demo",
        routers=[router],
        max_body_bytes=2000,
        start_runtime=False,
        fast_routes=[("POST", "/v1/fast")],
    )
    return app, calls


@pytest.fixture
def client_and_calls(tmp_path: Path):
    app, calls = make_app(tmp_path)
    with api_client(app, raise_server_exceptions=False) as client:
        yield client, calls


def test_errors_are_problem_json(client_and_calls) -> None:
    client, _ = client_and_calls
    missing = client.get("/v1/things/x", headers={"X-API-Key": ADMIN})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"].endswith("/not-found")
    assert missing.json()["detail"] == "no thing named x"
    # the route's template, never the requested path (its ids may be personal data)
    assert missing.json()["instance"] == "/v1/things/{name}"
    invalid = client.post("/v1/things", json={"name": "a"}, headers={"X-API-Key": ADMIN})
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "size"
    assert invalid.json()["errors"][0]["code"] == "missing"
    deep = b'{"name": ' + b"[" * 985 + b"]" * 985 + b', "size": 1}'  # under 2,000 bytes
    nested = client.post(
        "/v1/things", content=deep, headers={"X-API-Key": ADMIN, "content-type": "application/json"}
    )
    assert nested.status_code == 422
    assert nested.json()["type"].endswith("/malformed-json")
    assert nested.json()["errors"][0]["code"] == "malformed-json"
    unknown_route = client.get("/nowhere")
    assert unknown_route.status_code == 404
    assert unknown_route.headers["content-type"] == "application/problem+json"


def test_api_key_scopes(client_and_calls) -> None:
    client, _ = client_and_calls
    body = {"name": "a", "size": 1}
    assert client.post("/v1/things", json=body).status_code == 401
    assert client.post("/v1/things", json=body, headers={"X-API-Key": "nope"}).status_code == 401
    forbidden = client.post("/v1/things", json=body, headers={"X-API-Key": READER})
    assert forbidden.status_code == 403
    assert "demo:write" in forbidden.json()["detail"]
    assert client.get("/v1/things/x", headers={"X-API-Key": READER}).status_code == 404
    wildcard = client.post("/v1/things", json=body, headers={"X-API-Key": ALL_PROFILE})
    assert wildcard.status_code == 201


def test_idempotency_key_replays_and_rejects_other_bodies(client_and_calls) -> None:
    client, calls = client_and_calls
    headers = {"X-API-Key": ADMIN, "Idempotency-Key": "k-1"}
    first = client.post("/v1/things", json={"name": "a", "size": 1}, headers=headers)
    again = client.post("/v1/things", json={"name": "a", "size": 1}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/things", json={"name": "b", "size": 2}, headers=headers)
    assert other.status_code == 409
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert calls["create"] == 1


def test_idempotency_key_under_ten_concurrent_requests(client_and_calls) -> None:
    client, calls = client_and_calls
    headers = {"X-API-Key": ADMIN, "Idempotency-Key": "k-concurrent"}

    def post(_: int):
        return client.post("/v1/things", json={"name": "c", "size": 3}, headers=headers)

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(post, range(10)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert calls["create"] == 1


def test_body_limit_is_a_413_problem(client_and_calls) -> None:
    client, _ = client_and_calls
    big = client.post(
        "/v1/things", json={"name": "x" * 5000, "size": 1}, headers={"X-API-Key": ADMIN}
    )
    assert big.status_code == 413
    assert big.json()["type"].endswith("/payload-too-large")

    def chunked(body: bytes) -> Iterator[bytes]:  # no content-length: sent in chunks
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    headers = {"X-API-Key": ADMIN, "content-type": "application/json"}
    too_big = b'{"name": "' + b"x" * 5000 + b'", "size": 1}'
    response = client.post("/v1/things", content=chunked(too_big), headers=headers)
    assert response.status_code == 413
    assert response.json()["type"].endswith("/payload-too-large")
    fits = client.post("/v1/things", content=chunked(b'{"name": "c", "size": 2}'), headers=headers)
    assert fits.status_code == 201, fits.text


def test_cursor_round_trip_and_garbage(client_and_calls) -> None:
    client, _ = client_and_calls
    cursor = encode_cursor({"id": "c-9", "n": 3})
    assert client.get("/v1/page", params={"cursor": cursor}).json() == {
        "position": {"id": "c-9", "n": 3}
    }
    bad = client.get("/v1/page", params={"cursor": "%%%not-a-cursor"})
    assert bad.status_code == 400
    assert bad.json()["type"].endswith("/invalid-cursor")


def test_health_readiness_and_metrics(client_and_calls) -> None:
    client, _ = client_and_calls
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    # the broker at 127.0.0.1:1 is unreachable: the API still serves from its database
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["service"] == "demo"
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["broker"] == "unreachable"
    assert ready.json()["reasons"] == ["broker unreachable: events wait in the outbox"]
    client.get("/healthz")
    metrics = client.get("/metrics").text
    assert 'crm_http_requests_total{method="GET",route="/healthz",service="demo",status="200"}' in (
        metrics
    )


def test_fast_lane_route_behaves_like_a_routed_one(client_and_calls) -> None:
    client, calls = client_and_calls
    admin = {"X-API-Key": ADMIN, "content-type": "application/json"}
    assert client.post("/v1/fast", content=b"x", headers=JSON_BODY).status_code == 401
    forbidden = client.post("/v1/fast", content=b"x", headers={"X-API-Key": READER, **JSON_BODY})
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert "demo:write" in forbidden.json()["detail"]
    ok = client.post("/v1/fast", content=b"hello", headers=admin)
    assert (ok.status_code, ok.json()) == (202, {"echo": "hello"})
    bad = client.post("/v1/fast", content=b"bad", headers=admin)
    assert bad.status_code == 422
    assert bad.json()["detail"] == "the body is bad"
    assert bad.json()["instance"] == "/v1/fast"
    boom = client.post("/v1/fast", content=b"boom", headers=admin)
    assert boom.status_code == 500
    assert boom.json()["type"].endswith("/internal-error")
    assert "secret detail" not in boom.text
    too_big = client.post("/v1/fast", content=b"x" * 5000, headers=admin)
    assert too_big.status_code == 413
    # the outer middleware applies: idempotency, and metrics under the route's path
    headers = {**admin, "Idempotency-Key": "fast-1"}
    first = client.post("/v1/fast", content=b"once", headers=headers)
    again = client.post("/v1/fast", content=b"once", headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json() == again.json() == {"echo": "once"}
    assert calls["fast"] == 2  # "hello" and "once"; the replay did not run the endpoint
    metrics = client.get("/metrics").text
    assert 'method="POST",route="/v1/fast",service="demo",status="202"' in metrics
    # other methods on the path still go through the router
    assert client.get("/v1/fast", headers=admin).status_code == 405
    # and the route is documented like any other
    operation = client.get("/openapi.json").json()["paths"]["/v1/fast"]["post"]
    assert operation["summary"] == "Fast"


@pytest.mark.parametrize("kind", ["path parameter", "other dependency", "sync", "missing"])
def test_fast_lane_refuses_routes_it_cannot_serve_exactly(tmp_path: Path, kind: str) -> None:
    router = APIRouter()

    async def not_require() -> None:
        return None

    if kind == "path parameter":

        @router.post("/x/{name}")
        async def with_param(name: str, request: Request) -> Response:
            return Response()

        path = "/x/{name}"
    elif kind == "other dependency":

        @router.post("/x", dependencies=[Depends(not_require)])
        async def with_dependency(request: Request) -> Response:
            return Response()

        path = "/x"
    elif kind == "sync":

        @router.post("/x")
        def sync(request: Request) -> Response:
            return Response()

        path = "/x"
    else:
        path = "/nowhere"
    settings = DemoSettings(kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path)
    runtime = ServiceRuntime(settings, tmp_path / "no-migrations")
    with pytest.raises(ValueError, match="fast lane"):
        build_app(
            runtime=runtime,
            title="demo",
            description="demo",
            routers=[router],
            start_runtime=False,
            fast_routes=[("POST", path)],
        )
