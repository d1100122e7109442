"""/docs and /redoc load every asset from the service itself (they work offline)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.segment.app import create_app
from services.segment.config import Settings
from tests.conftest import api_client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        Settings(data_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:1", run_consumer=False)
    )
    # no lifespan: the pages need neither database nor broker
    with api_client(app, lifespan=False) as test_client:
        yield test_client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    sources = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html.text)
    sources += re.findall(r"url: '([^']+)'", html.text)
    assert sources
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))], sources
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 100, source


def test_swagger_ui_is_a_version_that_renders_openapi_3_1(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get("/docs/static/swagger-ui-bundle.js").text
    versions = set(re.findall(r'"(5\.\d+\.\d+)"', bundle))
    assert versions, "Swagger UI 5 (OpenAPI 3.1 support) expected"
