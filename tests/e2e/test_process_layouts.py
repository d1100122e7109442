"""``CRM_RUN_LAYOUT``: make run's other process layout carries an order end to end too."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

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
    assert processes_of("segment", env, "api-apart") == [
        ("segment", "api", env),
        ("segment-consumers", "consume", env),
    ]
    assert processes_of("ingest", env, "api-apart") == [("ingest", "serve", env)]
    monkeypatch.setenv("CRM_RUN_LAYOUT", "sideways")
    with pytest.raises(SystemExit, match="relay-apart"):
        layout()


def _niceness(pid: str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_api_apart_reads_apart_and_carries_an_order_to_scores(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    with running_system(broker, tmp_path, {"CRM_RUN_LAYOUT": "api-apart"}) as system:
        wait_for(lambda: ready(system), timeout=45, what="all four /readyz to answer 200")
        children = dict(
            reversed(line.split(" ", 1))
            for line in subprocess.run(
                ["pgrep", "-a", "-P", str(system.process.pid)], capture_output=True, text=True
            ).stdout.splitlines()
            if "services." in line
        )
        commands = {command.split("-m ", 1)[1]: pid for command, pid in children.items()}
        for name in ("profile", "segment", "campaign"):
            assert _niceness(commands[f"services.{name} api"]) == 0, commands
            assert _niceness(commands[f"services.{name} consume"]) == 10, commands
        assert "services.ingest serve" in commands, commands
        _carry_an_order_to_scores(system)


def test_relay_apart_carries_an_order_to_scores(broker: EmbeddedBroker, tmp_path: Path) -> None:
    with running_system(broker, tmp_path, {"CRM_RUN_LAYOUT": "relay-apart"}) as system:
        wait_for(lambda: ready(system), timeout=45, what="all four /readyz to answer 200")
        children = subprocess.run(
            ["pgrep", "-a", "-P", str(system.process.pid)], capture_output=True, text=True
        ).stdout
        assert "services.ingest consume" in children, children
        assert "services.ingest serve" in children, children
        # the API process does not relay: the order reaches segment through ingest-relay
        _carry_an_order_to_scores(system)


def _carry_an_order_to_scores(system: Any) -> None:
    """POST one order to ingest; its scores appear at segment."""
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
        r = httpx.get(system.url("segment", f"/v1/customers/{customer}/scores"), headers=headers)
        return r.json() if r.status_code == 200 else None

    view = wait_for(scores, timeout=30, what="segment scores")
    assert view["frequency"] == 1 and view["monetary"] == "88.00"
