"""The authorization matrix over every route of the four services: no key, an unknown key,
a revoked key, an expired key, a key lacking the route's scope, and a read-only key. Also
checks that every guarded operation declares the X-API-Key scheme and its scopes in the
service's OpenAPI document. A new route without ``require(...)`` fails here unless it is
named public below."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared import manifest
from shared.apikeys import KNOWN_SCOPES, ApiKeyState, KeyDirectory, compose_key, hash_secret
from shared.events import utcnow
from shared.openapi_security import SCHEME, api_routes, route_scopes
from tests.conftest import api_client

SERVICES = manifest.NAMES
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
READ_ONLY = sorted(s for s in KNOWN_SCOPES if s.endswith(":read"))


def managed(directory: KeyDirectory, key_id: str, scopes: list[str], **extra: Any) -> str:
    directory.apply(
        ApiKeyState(
            key_id=key_id,
            name=key_id,
            scopes=scopes,
            secret_hash=hash_secret("secret"),
            created_at=utcnow() - timedelta(days=1),
            **extra,
        )
    )
    return compose_key(key_id, "secret")


@pytest.fixture
def client(service: str, tmp_path: Path) -> Iterator[TestClient]:
    settings_class = import_module(f"services.{service}.config").Settings
    settings = settings_class(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        api_key="matrix-admin",
        failed_auth_limit="unlimited",
        run_consumer=False,
    )
    app = import_module(f"services.{service}.app").create_app(settings)
    # no lifespan: nothing starts
    with api_client(app, lifespan=False, raise_server_exceptions=False) as test_client:
        yield test_client


def routes(client: TestClient) -> list[tuple[str, str, tuple[str, ...] | None]]:
    found = []
    for route in api_routes(client.app):  # type: ignore[arg-type]
        path = re.sub(r"\{[^}]+\}", "x", route.path_format)
        for method in sorted(route.methods or ()):
            found.append((method, path, route_scopes(route)))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_refuses_what_it_must(service: str, client: TestClient) -> None:
    directory: KeyDirectory = client.app.state.key_directory  # type: ignore[attr-defined]
    revoked = managed(directory, "revoked", ["*"], revoked_at=utcnow())
    expired = managed(directory, "expired", ["*"], expires_at=utcnow() - timedelta(seconds=1))
    read_only = managed(directory, "readonly", READ_ONLY)
    checked: set[tuple[str, str]] = set()
    for method, path, scopes in routes(client):
        if scopes is None:
            assert path in PUBLIC, f"{method} {path} needs no API key"
            continue

        def call(key: str | None, method: str = method, path: str = path) -> Any:
            headers = {"X-API-Key": key} if key is not None else {}
            return client.request(method, path, headers=headers, json={})

        where = f"{service} {method} {path}"
        for key, reason in (
            (None, None),
            ("unknown", "unknown"),
            (revoked, "revoked"),
            (expired, "expired"),
        ):
            response = call(key)
            assert response.status_code == 401, (where, key, response.text)
            assert response.headers["www-authenticate"] == "ApiKey"
            if reason is not None:
                assert response.json()["reason"] == reason, where
        if scopes:
            lacking = managed(
                directory, f"lacking-{len(checked)}", sorted(KNOWN_SCOPES - set(scopes))
            )
            assert call(lacking).status_code == 403, where
            if not all(scope in READ_ONLY for scope in scopes):
                assert call(read_only).status_code == 403, where
        checked.add((method, path))
    # not vacuous: every guarded route of the service's own routes module was found and
    # checked (a service without routes of its own has nothing to check)
    own = import_module(f"{manifest.service(service).package}.routes").router
    guarded = {
        (method, re.sub(r"\{[^}]+\}", "x", route.path_format))
        for route in api_routes(own)  # type: ignore[arg-type]
        if route_scopes(route) is not None
        for method in route.methods or ()
    }
    assert guarded <= checked, f"{service}: routes.py routes not checked: {guarded - checked}"


@pytest.mark.parametrize("service", SERVICES)
def test_openapi_declares_the_api_key_and_each_operations_scopes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"][SCHEME]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-API-Key"}
    for method, path, scopes in routes(client):
        operations = [
            op
            for doc_path, item in document["paths"].items()
            if re.sub(r"\{[^}]+\}", "x", doc_path) == path
            for verb, op in item.items()
            if verb == method.lower()
        ]
        if scopes is None or not operations:
            continue
        [operation] = operations
        assert operation["security"] == [{SCHEME: []}], (method, path)
        assert operation["x-required-scopes"] == list(scopes), (method, path)
