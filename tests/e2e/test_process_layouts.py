"""``CRM_RUN_LAYOUT``: make run's other process layout carries an order end to end too."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from devtools.broker import EmbeddedBroker
from devtools.devrun import CONSUMER_NICENESS, DEFAULT_LAYOUT, layout, processes_of
from devtools.testing import unique, wait_for
from tests.e2e.system import RunningSystem, ready, running_system

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


def _children(system: RunningSystem) -> dict[str, str]:
    """``{"services.<name> <command>": pid}`` of the supervisor's service processes."""
    listed = subprocess.run(
        ["pgrep", "-a", "-P", str(system.process.pid)], capture_output=True, text=True
    ).stdout
    return {
        line.split("-m ", 1)[1]: line.split(" ", 1)[0]
        for line in listed.splitlines()
        if "-m services." in line
    }


def _niceness(pid: str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_default_reads_apart_and_carries_an_order_to_scores(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    with running_system(broker, tmp_path) as system:
        assert DEFAULT_LAYOUT == "api-apart"
        assert set(system.internal_ports) == {"profile", "segment", "campaign"}
        # ready() also asks each consume process's internal /readyz, from that service
        wait_for(lambda: ready(system), timeout=45, what="every /readyz to answer 200")
        commands = _children(system)
        for name in ("profile", "segment", "campaign"):
            assert _niceness(commands[f"services.{name} api"]) == 0, commands
            assert _niceness(commands[f"services.{name} consume"]) == CONSUMER_NICENESS
        assert "services.ingest serve" in commands, commands
        _carry_an_order_to_scores(system)
        for name, port in system.internal_ports.items():
            readiness = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
            assert readiness["service"] == name and readiness["status"] == "ready", readiness
            # its consumers are reported where they run, and counted in its /metrics
            assert readiness["checks"]["consumers"], readiness
            # (the lag gauges exist once a consumer has its partitions and a fetch answered)
            url = f"http://127.0.0.1:{port}/metrics"
            wait_for(
                lambda url=url: "crm_consumer_lag{" in httpx.get(url, timeout=5).text,
                timeout=60,
                what=f"{name}'s consumer lag on its internal port",
            )
            absent = httpx.get(f"http://127.0.0.1:{port}/v1/customers/x", timeout=5)
            assert absent.status_code == 404
        # the API processes consume nothing: their readiness asks their consumer process's
        api = system.get("segment", "/readyz").json()
        assert api["service"] == "segment" and not api["checks"]["consumers"], api
        assert api["checks"]["consumer_process"] == "ok", api
        # a frozen consumer process shows at the service's own port
        frozen = int(commands["services.segment consume"])
        os.kill(frozen, signal.SIGSTOP)
        try:
            answer = system.get("segment", "/readyz")
            assert answer.status_code == 503, answer.text
            assert answer.json()["checks"]["consumer_process"].startswith("not answering")
        finally:
            os.kill(frozen, signal.SIGCONT)
        wait_for(lambda: ready(system), timeout=30, what="segment ready again")


def test_combined_carries_an_order_to_scores(broker: EmbeddedBroker, tmp_path: Path) -> None:
    with running_system(broker, tmp_path, {"CRM_RUN_LAYOUT": "combined"}) as system:
        assert not system.internal_ports
        wait_for(lambda: ready(system), timeout=45, what="all four /readyz to answer 200")
        commands = _children(system)
        assert sorted(commands) == sorted(f"services.{name} serve" for name in system.ports)
        _carry_an_order_to_scores(system)


def test_relay_apart_carries_an_order_to_scores(broker: EmbeddedBroker, tmp_path: Path) -> None:
    with running_system(broker, tmp_path, {"CRM_RUN_LAYOUT": "relay-apart"}) as system:
        wait_for(lambda: ready(system), timeout=45, what="all four /readyz to answer 200")
        commands = _children(system)
        assert "services.ingest consume" in commands, commands
        assert "services.ingest serve" in commands, commands
        # the API process does not relay: the order reaches segment through ingest-relay
        _carry_an_order_to_scores(system)


def _carry_an_order_to_scores(system: RunningSystem) -> None:
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
    answer = system.post("ingest", "/v1/orders", json=order)
    assert answer.status_code == 202, answer.text

    def scores() -> dict | None:
        r = system.get("segment", f"/v1/customers/{customer}/scores")
        return r.json() if r.status_code == 200 else None

    view = wait_for(scores, timeout=30, what="segment scores")
    assert view["frequency"] == 1 and view["monetary"] == "88.00"
