"""A complete subject-access export through the four real processes: profile asks over
Kafka, ingest, segment and campaign answer, and GET /v1/exports/{id} assembles it with
readable field names. An erasure afterwards removes the export with the rest."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.testing import wait_for
from shared.exports import ANSWERING_SERVICES
from tests.e2e.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

STORAGE_KEYS = {"cur", "net", "cats", "disc", "f", "prov", "tx"}


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


def order(order_id: str, status: str, updated_at: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": "sar-1",
        "status": status,
        "created_at": "2026-11-01T10:00:00+08:00",
        "updated_at": updated_at,
        "currency": "CNY",
        "total_amount": "299.00",
        "buyer": {"name": "欧阳娜娜", "mobile": "13912345678"},
        "shipping": {"province": "浙江", "city": "杭州"},
        "items": [{"sku": "s1", "category": "shoes", "quantity": 1, "unit_price": "299.00"}],
    }


def test_an_export_holds_every_services_data_and_erasure_removes_it(system: RunningSystem) -> None:
    system.wait_ready()
    for body in (
        order("sar-o1", "paid", "2026-11-01T10:00:00+08:00"),
        order("sar-o1", "shipped", "2026-11-02T10:00:00+08:00"),
    ):
        assert system.post("ingest", "/v1/orders", json=body).status_code == 202
    wait_for(
        lambda: (
            system.get("profile", "/v1/customers/sar-1").status_code == 200
            and system.get("segment", "/v1/customers/sar-1/scores").status_code == 200
        ),
        timeout=60,
        what="the orders reached profile and segment",
    )
    started = system.post("profile", "/v1/customers/sar-1/exports")
    assert started.status_code == 202, started.text
    export_id = started.json()["export_id"]
    assert started.json()["services"]["profile"] == "done"

    def complete() -> dict[str, Any] | None:
        body: dict[str, Any] = system.get("profile", f"/v1/exports/{export_id}").json()
        return body if body["status"] == "complete" else None

    export = wait_for(complete, timeout=60, what="every service's part")
    assert export["services"] == dict.fromkeys(("profile", *ANSWERING_SERVICES), "done")
    document = export["document"]
    [ingest_order] = document["ingest"]["orders"]
    assert ingest_order["order_id"] == "sar-o1"
    assert [v["record"]["status"] for v in ingest_order["versions"]] == ["paid", "shipped"]
    assert document["segment"]["scores"][0]["customer_id"] == "sar-1"
    assert document["segment"]["scores"][0]["frequency"] == 1
    assert set(document["campaign"]) == {"audience", "campaign_entries", "messages", "receipts"}
    profile_order = document["profile"]["orders"][0]
    assert profile_order["currency"] == "CNY" and profile_order["categories"] == ["shoes"]
    assert not keys_of(document) & STORAGE_KEYS, keys_of(document) & STORAGE_KEYS
    assert "欧阳娜娜" in json.dumps(document, ensure_ascii=False)

    assert system.delete("profile", "/v1/customers/sar-1").status_code == 200
    assert system.get("profile", f"/v1/exports/{export_id}").status_code == 404
