"""``CRM_RUN_LAYOUT``: make run's other process layout carries an order end to end too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from devtools.broker import EmbeddedBroker
from devtools.devrun import layout, processes_of
from devtools.testing import unique, wait_for
from tests.conftest import ADMIN_KEY
from tests.e2e.system import ready, running_system

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def test_layouts_name_their_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"X": "1"}
    assert processes_of("segment", env, "relay-apart") == [("segment", "serve", env)]
    api, relay = processes_of("ingest", env, "relay-apart")
    assert api[1] == "serve" and api[2]["INGEST_RUN_RELAY"] == "false"
    assert api[2]["INGEST_RUN_CONSUMER"] == "false"
    assert relay == ("ingest-relay", "consume", env)
    assert processes_of("ingest", env, "combined") == [("ingest", "serve", env)]
    monkeypatch.setenv("CRM_RUN_LAYOUT", "sideways")
    with pytest.raises(SystemExit, match="relay-apart"):
        layout()


def test_relay_apart_carries_an_order_to_scores(broker: EmbeddedBroker, tmp_path: Path) -> None:
    with running_system(broker, tmp_path, {"CRM_RUN_LAYOUT": "relay-apart"}) as system:
        wait_for(lambda: ready(system), timeout=45, what="all four /readyz to answer 200")
        children = subprocess.run(
            ["pgrep", "-a", "-P", str(system.process.pid)], capture_output=True, text=True
        ).stdout
        assert "services.ingest consume" in children, children
        assert "services.ingest serve" in children, children
        customer = unique("cust")
        order = {
            "order_id": unique("T"),
            "customer_id": customer,
            "status": "paid",
            "created_at": "2026-11-01T10:00:00+08:00",
            "paid_at": "2026-11-01T10:02:13+08:00",
            "currency": "CNY",
            "total_amount": "88.00",
            "channel": "tmall",
        }
        headers = {"X-API-Key": ADMIN_KEY}
        answer = httpx.post(system.url("ingest", "/v1/orders"), json=order, headers=headers)
        assert answer.status_code == 202, answer.text

        def scores() -> dict | None:
            r = httpx.get(
                system.url("segment", f"/v1/customers/{customer}/scores"), headers=headers
            )
            return r.json() if r.status_code == 200 else None

        # the API process does not relay: the order reached segment through ingest-relay
        view = wait_for(scores, timeout=30, what="segment scores through the relay process")
        assert view["frequency"] == 1 and view["monetary"] == "88.00"
