"""/metrics: open on the API port by default, behind a metrics:read key when
CRM_METRICS_REQUIRE_KEY is set, or only on an internal port (<SERVICE>_METRICS_PORT)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import httpx
from fastapi.testclient import TestClient

from devtools.broker import free_port
from shared.api import build_app, start_metrics_listener
from shared.config import ServiceSettings
from shared.runtime import ServiceRuntime
from tests.conftest import api_client, runtime_of


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "demo"


@contextmanager
def client_with(tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    config = DemoSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        api_key="admin",
        api_keys={"scraper": ["metrics:read"], "reader": ["demo:read"]},
        **settings,
    )
    runtime = ServiceRuntime(config, tmp_path / "no-migrations")
    app = build_app(runtime=runtime, title="t", description="t", routers=[], start_runtime=False)
    with api_client(app, lifespan=False) as client:
        yield client


def test_metrics_answer_anyone_by_default(tmp_path: Path) -> None:
    with client_with(tmp_path) as client:
        response = client.get("/metrics")
    assert response.status_code == 200 and "crm_" in response.text


def test_metrics_can_require_a_key_with_metrics_read(tmp_path: Path) -> None:
    with client_with(tmp_path, metrics_require_key=True) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": "reader"}).status_code == 403
        assert client.get("/metrics", headers={"X-API-Key": "scraper"}).status_code == 200
        document = client.get("/openapi.json").json()
    assert document["paths"]["/metrics"]["get"]["x-required-scopes"] == ["metrics:read"]


def test_metrics_can_listen_only_on_an_internal_port(tmp_path: Path) -> None:
    port = free_port()
    with client_with(tmp_path, metrics_port=port) as client:
        assert client.get("/metrics", headers={"X-API-Key": "admin"}).status_code == 404
        settings = runtime_of(client).settings
    stop = start_metrics_listener(settings)
    assert stop is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200 and "crm_" in response.text
    finally:
        stop()
    assert start_metrics_listener(DemoSettings(data_dir=tmp_path)) is None


def test_a_consumer_process_is_watched_on_its_internal_port(tmp_path: Path) -> None:
    """``consume`` has no API: its /readyz, /healthz and /metrics answer on the internal port."""
    port = free_port()
    with client_with(tmp_path, metrics_port=port) as client:
        runtime = runtime_of(client)
        stop = start_metrics_listener(runtime.settings, runtime)
        assert stop is not None
        try:
            base = f"http://127.0.0.1:{port}"
            readiness = httpx.get(f"{base}/readyz", timeout=5)
            # the broker at 127.0.0.1:1 is away: degraded, served from the database
            assert readiness.status_code == 200
            assert readiness.json()["service"] == "demo"
            assert readiness.json()["status"] == "degraded"
            assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
            assert "crm_" in httpx.get(f"{base}/metrics", timeout=5).text
            absent = httpx.get(f"{base}/v1/anything", timeout=5)
            assert absent.status_code == 404
            assert absent.headers["content-type"] == "application/problem+json"
        finally:
            stop()
