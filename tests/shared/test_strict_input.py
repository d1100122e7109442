"""Strict request bodies on every service: 415 unless declared JSON (forms on form routes),
422 for duplicate keys (issue 12, strict input)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest
from fastapi import APIRouter, Form
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shared.api import build_app, require
from shared.config import ServiceSettings
from shared.db import make_metadata
from shared.runtime import ServiceRuntime
from shared.strict_input import first_duplicate_key
from tests.conftest import api_client

ADMIN = "admin-key"
KEY = {"X-API-Key": ADMIN}
JSON = {**KEY, "content-type": "application/json"}


class StrictSettings(ServiceSettings):
    service_name: ClassVar[str] = "strict"


class Thing(BaseModel):
    name: str
    labels: dict[str, str] = {}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = StrictSettings(
        kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, api_key=ADMIN
    )
    runtime = ServiceRuntime(settings, tmp_path / "no-migrations")
    make_metadata().create_all(runtime.db.engine)
    router = APIRouter(prefix="/v1")

    @router.post("/things")
    def create(thing: Thing) -> dict[str, Any]:
        """Echo a thing."""
        return thing.model_dump()

    @router.post("/things/{name}/touch")
    def touch(name: str) -> dict[str, str]:
        """A POST without a body."""
        return {"touched": name}

    @router.post("/upload")
    def upload(note: Annotated[str, Form()]) -> dict[str, str]:
        """A form route."""
        return {"note": note}

    @router.post("/guarded", dependencies=[require("customers:write")])
    def guarded(thing: Thing) -> dict[str, Any]:
        """A route that needs a key with a scope."""
        return thing.model_dump()

    app = build_app(
        runtime=runtime,
        title="strict",
        description="strict",
        routers=[router],
        start_runtime=False,
    )
    with api_client(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [KEY, {**KEY, "content-type": "text/plain"}, {**KEY, "content-type": "application/xml"}],
)
def test_a_body_not_declared_as_json_is_415(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/v1/things", content=b'{"name": "a"}', headers=headers)
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unsupported-media-type")


def test_json_bodies_forms_on_form_routes_and_bodiless_posts_pass(client: TestClient) -> None:
    ok = client.post("/v1/things", content=b'{"name": "a"}', headers=JSON)
    assert ok.status_code == 200 and ok.json()["name"] == "a"
    charset = {**KEY, "content-type": "application/json; charset=utf-8"}
    assert client.post("/v1/things", content=b'{"name": "b"}', headers=charset).status_code == 200
    problem_json = {**KEY, "content-type": "application/merge-patch+json"}
    assert client.post("/v1/things", content=b'{"name": "c"}', headers=problem_json).status_code
    assert client.post("/v1/things/x/touch", headers=KEY).json() == {"touched": "x"}
    form = client.post("/v1/upload", data={"note": "hi"}, headers=KEY)
    assert form.status_code == 200 and form.json() == {"note": "hi"}
    multipart = client.post("/v1/upload", files={"note": (None, "hey")}, headers=KEY)
    assert multipart.status_code == 200 and multipart.json() == {"note": "hey"}
    # a form route parses its own body: JSON there is the route's 422
    assert client.post("/v1/upload", json={"note": "x"}, headers=KEY).status_code == 422


def test_without_credentials_the_routes_own_answer_comes_first(client: TestClient) -> None:
    # (these demo routes need no key: the body reaches the route, which parses it as JSON)
    response = client.post("/v1/things", content=b'{"name": "a"}')
    assert response.status_code != 415


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "a", "name": "b"}',
        b'{"name": "a", "labels": {"k": "1", "k": "2"}}',
        b'{"name": "a", "labels": {"k": "1"}, "labels": {}}',
    ],
)
def test_a_duplicate_key_is_422(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/things", content=body, headers=JSON)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/duplicate-key")
    assert [e["code"] for e in problem["errors"]] == ["json.duplicate_key"]


def test_not_json_is_still_the_routes_answer(client: TestClient) -> None:
    response = client.post("/v1/things", content=b"{nope", headers=JSON)
    assert response.status_code == 422
    assert response.json()["type"].endswith("/validation-error")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"content-type": "text/plain"}, b'{"name": "a"}'),
        ({"content-type": "application/json"}, b'{"name": "a", "name": "b"}'),
    ],
)
def test_authentication_comes_before_the_body_check(
    client: TestClient, headers: dict[str, str], body: bytes
) -> None:
    """No key: 401 (not 415/422); an unknown key: 401; with the key: the body's answer."""
    assert client.post("/v1/guarded", content=body, headers=headers).status_code == 401
    unknown = {**headers, "X-API-Key": "nope"}
    assert client.post("/v1/guarded", content=body, headers=unknown).status_code == 401
    assert client.post("/v1/guarded", content=body, headers={**headers, **KEY}).status_code in (
        415,
        422,
    )


@pytest.mark.parametrize(
    ("text", "duplicate"),
    [
        ('{"a": 1, "b": 2}', None),
        ('{"a": 1, "a": 2}', "a"),
        ('[{"a": 1}, {"a": 2}]', None),  # the same key in two objects is fine
        ('{"x": [{"a": 1, "b": {"c": 1, "c" : 2}}]}', "c"),
        # a quote and a colon inside a string: the fast count over-counts, the parse decides
        ('{"a": "say \\": hi", "b": 1}', None),
        ('{"a": "say \\": hi", "a": 1}', "a"),
        ('{"\\u0061": 1, "a": 2}', "a"),  # the same key written two ways
    ],
)
def test_first_duplicate_key(text: str, duplicate: str | None) -> None:
    parsed = json.loads(text)
    assert first_duplicate_key(text.encode(), parsed) == duplicate
