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
from devtools.testing import answering
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


@contextmanager
def internal_port(tmp_path: Path) -> Iterator[str]:
    """The base URL of a consume process's internal port (a demo runtime behind it)."""
    port = free_port()
    with client_with(tmp_path, metrics_port=port) as client:
        runtime = runtime_of(client)
        stop = start_metrics_listener(runtime.settings, runtime)
        assert stop is not None
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop()


def test_a_consumer_process_is_watched_on_its_internal_port(tmp_path: Path) -> None:
    """``consume`` has no API: its /readyz, /healthz and /metrics answer on the internal port."""
    with internal_port(tmp_path) as base:
        readiness = httpx.get(f"{base}/readyz", timeout=5)
        # the broker at 127.0.0.1:1 is away: degraded, served from the database
        assert readiness.status_code == 200
        assert readiness.json()["service"] == "demo"
        assert readiness.json()["status"] == "degraded"
        assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        assert "crm_" in httpx.get(f"{base}/metrics", timeout=5).text
        head = httpx.head(f"{base}/readyz", timeout=5)
        assert head.status_code == 200 and head.content == b""


def test_the_internal_port_answers_problems_and_never_echoes_the_path(tmp_path: Path) -> None:
    with internal_port(tmp_path) as base:
        absent = httpx.get(f"{base}/v1/customers/alice@example.com", timeout=5)
        assert absent.status_code == 404
        assert absent.headers["content-type"] == "application/problem+json"
        assert "alice" not in absent.text and absent.json()["status"] == 404
        posted = httpx.post(f"{base}/readyz", content=b"x", timeout=5)
        assert posted.status_code == 405
        assert posted.headers["content-type"] == "application/problem+json"


def test_an_api_apart_from_its_consumers_is_ready_only_when_they_are(tmp_path: Path) -> None:
    """``<SERVICE>_CONSUMERS_URL`` (make run's api-apart): the API's /readyz asks the consume
    process's, so a dead or stalled consumer process shows at the service's own port."""
    fine = {"service": "demo", "status": "ready"}
    with (
        answering(fine) as port,
        client_with(tmp_path, consumers_url=f"http://127.0.0.1:{port}") as client,
    ):
        ready = client.get("/readyz")
    # the broker at 127.0.0.1:1 is away: degraded, but the consumer process is fine
    assert ready.status_code == 200 and ready.json()["checks"]["consumer_process"] == "ok"
    stalled = {"status": "not ready", "reasons": ["consumer demo stalled: no progress for 31s"]}
    with (
        answering(stalled, status=503) as port,
        client_with(tmp_path, consumers_url=f"http://127.0.0.1:{port}") as client,
    ):
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert (
        "consumer demo stalled: no progress for 31s" in answer.json()["checks"]["consumer_process"]
    )
    assert any(str(port) in reason for reason in answer.json()["reasons"])
    gone = f"http://127.0.0.1:{free_port()}"
    with client_with(tmp_path, consumers_url=gone) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["consumer_process"].startswith("not answering")
