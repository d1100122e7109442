"""GET /v1/orders/{order_id}: the current state and every version kept, in arrival order."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.broker import EmbeddedBroker
from services.ingest.app import create_app
from tests.conftest import api_client
from tests.ingest.test_api import HEADERS, order, settings_for

pytestmark = pytest.mark.kafka


def test_an_order_answers_with_every_version_even_late_ones(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, db_url: str
) -> None:
    settings = settings_for(broker, namespace, tmp_path, db_url)
    with api_client(create_app(settings)) as client:
        at = "2026-11-01T09:00:00+08:00"
        paid = order(created_at=at, updated_at="2026-11-01T10:00:00+08:00")
        shipped = order(created_at=at, status="shipped", updated_at="2026-11-02T10:00:00+08:00")
        created = order(created_at=at, status="created", updated_at=at)  # arrives late
        for body in (paid, shipped, paid, created):  # the repeat is a duplicate: not kept
            assert client.post("/v1/orders", json=body, headers=HEADERS).status_code == 202
        response = client.get("/v1/orders/T1", headers=HEADERS)
        assert response.status_code == 200, response.text
        history = response.json()
        assert history["order_id"] == "T1" and history["customer_id"] == "c-1"
        assert history["current"]["status"] == "shipped"
        versions = history["versions"]
        assert [v["order"]["status"] for v in versions] == ["paid", "shipped", "created"]
        assert [v["current"] for v in versions] == [True, True, False]
        assert [v["sequence"] for v in versions] == sorted(v["sequence"] for v in versions)
        assert versions[0]["order"]["buyer"]["mobile"] == "+8613800138000"
        assert all(v["received_at"].endswith(("Z", "+00:00")) for v in versions)

        assert client.get("/v1/orders/nope", headers=HEADERS).status_code == 404
        # personal data inside: ingest:read alone is not enough
        assert client.get("/v1/orders/T1", headers={"X-API-Key": "reader"}).status_code == 403
