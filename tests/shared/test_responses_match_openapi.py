"""Responses match the OpenAPI documents: each answer's status and media type are
documented for its operation, and its body validates against the documented schema."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient

from devtools.broker import EmbeddedBroker
from shared import manifest
from tests.conftest import ADMIN_KEY, api_client

ADMIN = {"X-API-Key": ADMIN_KEY}
READER = {"X-API-Key": "reader-key"}


def conforms(document: dict[str, Any], method: str, path: str, response: httpx.Response) -> None:
    """Fail unless ``response`` is one the document promises for ``method path``."""
    operation = document["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: {status} undocumented"
    content = operation["responses"][status].get("content")
    if not content:
        return
    media = response.headers["content-type"].split(";")[0]
    assert media in content, f"{method} {path} {status}: {media} not in {list(content)}"
    schema = {**content[media]["schema"], "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(response.json())


@pytest.fixture(params=manifest.NAMES)
def service(
    request: pytest.FixtureRequest, broker: EmbeddedBroker, namespace: str, tmp_path: Path
) -> Iterator[tuple[str, TestClient, dict[str, Any]]]:
    name = request.param
    config = importlib.import_module(f"services.{name}.config")
    app_module = importlib.import_module(f"services.{name}.app")
    settings = config.Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'test.db'}",
        api_key=ADMIN_KEY,
        api_keys={"reader-key": [f"{name}:read"]},
        run_consumer=False,
    )
    with api_client(app_module.create_app(settings)) as client:
        yield name, client, client.get("/openapi.json").json()


#: per service, example calls whose answers must match its document: at least one success
#: and one error (a service in the manifest without an entry here fails with what to add)
CALLS: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = {
    # (method, documented path, concrete path, request options)
    "ingest": [
        ("POST", "/v1/orders", "/v1/orders", {"json": {"order_id": "x"}}),  # 422
        ("POST", "/v1/orders", "/v1/orders", {"json": {"order_id": "T1", "customer_id": "c1", "status": "paid", "created_at": "2026-11-01T10:00:00+08:00", "currency": "CNY", "total_amount": "1.00"}}),
        ("POST", "/v1/orders", "/v1/orders", {"json": {}, "headers": READER}),  # 403
        ("GET", "/v1/imports/{job_id}", "/v1/imports/nope", {}),  # 404
        ("GET", "/v1/stats", "/v1/stats", {"params": {"windows": "1h"}}),
        ("GET", "/v1/stats", "/v1/stats", {"params": {"windows": "2y"}}),  # 422
    ],
    "profile": [
        ("GET", "/v1/customers", "/v1/customers", {}),
        ("GET", "/v1/customers", "/v1/customers", {"params": {"limit": 0}}),  # 422
        ("GET", "/v1/customers/{customer_id}", "/v1/customers/nobody", {}),  # 404
        ("GET", "/v1/tags", "/v1/tags", {}),
        ("GET", "/v1/tag-rules", "/v1/tag-rules", {"headers": READER}),
        ("POST", "/v1/tag-rules", "/v1/tag-rules", {"json": {"tag": "big", "rule": {"field": "nope", "op": "eq", "value": 1}}}),
    ],
    "segment": [
        ("GET", "/v1/segments", "/v1/segments", {}),
        ("GET", "/v1/segments", "/v1/segments", {"headers": {}}),  # 401
        ("GET", "/v1/segments", "/v1/segments", {"params": {"cursor": "e"}}),  # 400
        ("POST", "/v1/segments", "/v1/segments", {"json": {"segment_id": "gd", "name": "GD", "rule": {"field": "province", "op": "eq", "value": "广东省"}}}),
        ("POST", "/v1/segments", "/v1/segments", {"json": {"segment_id": "gd", "name": "GD", "rule": {"field": "province", "op": "eq", "value": "广东省"}}}),  # 409
        ("GET", "/v1/segments/{segment_id}", "/v1/segments/nope", {}),  # 404
        ("GET", "/v1/scoring-policy/versions", "/v1/scoring-policy/versions", {"headers": READER}),
        ("GET", "/v1/clv/fits", "/v1/clv/fits", {"headers": READER}),
        ("GET", "/v1/reports/{report}", "/v1/reports/funnel", {}),
        ("GET", "/v1/reports/{report}", "/v1/reports/churn", {}),  # 422
    ],
    "campaign": [
        ("GET", "/v1/campaigns", "/v1/campaigns", {}),
        ("GET", "/v1/campaigns/{campaign_id}", "/v1/campaigns/nope", {}),  # 404
        ("POST", "/v1/campaigns", "/v1/campaigns", {"json": {"name": "x"}}),  # 422
        ("POST", "/v1/campaigns", "/v1/campaigns", {"json": {"name": "x"}, "headers": READER}),  # 403
    ],
}  # fmt: skip


def example_calls(name: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    if name not in CALLS:
        pytest.fail(
            f"{name} is in shared/manifest.py but has no example calls: add "
            f'CALLS["{name}"] in tests/shared/test_responses_match_openapi.py, a list of '
            "(method, documented path, concrete path, request options) with at least one "
            "call answered 2xx and one answered 4xx (e.g. a 404 or a 422)"
        )
    return CALLS[name]


def test_every_service_has_example_calls() -> None:
    """Without a broker: a service added to the manifest is told here what to add."""
    for name in manifest.NAMES:
        assert example_calls(name)
    assert set(CALLS) <= set(manifest.NAMES), "CALLS names a service not in the manifest"


def test_responses_match_the_document(service: tuple[str, TestClient, dict[str, Any]]) -> None:
    name, client, document = service
    statuses = set()
    for method, path, concrete, options in example_calls(name):
        options = {"headers": ADMIN, **options}
        response = client.request(method, concrete, **options)
        conforms(document, method, path, response)
        statuses.add(response.status_code)
    assert any(s < 300 for s in statuses) and any(s >= 400 for s in statuses)


def test_every_write_documents_the_415_it_answers_to_a_body_not_declared_json(
    service: tuple[str, TestClient, dict[str, Any]],
) -> None:
    _, client, document = service
    writes = 0
    for path, item in document["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in item.keys() & {"post", "put", "patch"}:
            response = client.request(
                method.upper(),
                concrete,
                content=b"order_id=1",
                headers={**ADMIN, "Content-Type": "text/plain"},
            )
            content = item[method].get("requestBody", {}).get("content", {})
            if any(media.startswith("multipart/") for media in content):
                # an upload parses its own body: a 422, and no 415 documented
                assert response.status_code == 422, (method, path, response.text)
                assert "415" not in item[method]["responses"], (method, path)
            else:
                assert response.status_code == 415, (method, path, response.text)
                writes += 1
            conforms(document, method.upper(), path, response)
    assert writes > 0


def test_an_undocumented_body_is_caught() -> None:
    document = {
        "paths": {"/x": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}}}}},
        "components": {"schemas": {"A": {"type": "object", "required": ["a"]}}},
    }  # fmt: skip
    good = httpx.Response(200, json={"a": 1})
    conforms(document, "GET", "/x", good)
    with pytest.raises(jsonschema.ValidationError):
        conforms(document, "GET", "/x", httpx.Response(200, json={"b": 1}))
    with pytest.raises(AssertionError):
        conforms(document, "GET", "/x", httpx.Response(404, json={}))
