"""make run's plan of processes: ports checked before anything starts, and in api-apart each
API told where its consumer process answers."""

from __future__ import annotations

import socket

import pytest

from devtools.broker import free_port
from devtools.devrun import planned_processes
from shared import manifest


def _ports(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[int, int]]:
    ports = {}
    for name in manifest.NAMES:
        api, internal = free_port(), free_port()
        monkeypatch.setenv(f"{name.upper()}_PORT", str(api))
        monkeypatch.setenv(f"{name.upper()}_CONSUMERS_PORT", str(internal))
        ports[name] = (api, internal)
    monkeypatch.delenv("CRM_RUN_SERVICES", raising=False)
    return ports


def test_api_apart_pairs_each_api_with_its_consumer_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = _ports(monkeypatch)
    plan = {
        label: (port, command, env)
        for _, port, label, command, env in planned_processes("api-apart")
    }
    assert plan["ingest"][:2] == (ports["ingest"][0], "serve")
    assert "INGEST_CONSUMERS_URL" not in plan["ingest"][2]
    for name in ("profile", "segment", "campaign"):
        api, internal = ports[name]
        prefix = name.upper()
        port, command, env = plan[name]
        assert (port, command) == (api, "api")
        assert env[f"{prefix}_CONSUMERS_URL"] == f"http://127.0.0.1:{internal}"
        port, command, env = plan[f"{name}-consumers"]
        assert (port, command) == (internal, "consume")
        assert env[f"{prefix}_METRICS_PORT"] == str(internal)


def test_combined_has_no_consumer_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = _ports(monkeypatch)
    plan = planned_processes("combined")
    assert [(label, command) for _, _, label, command, _ in plan] == [
        (name, "serve") for name in manifest.NAMES
    ]
    assert all(not any(k.endswith("_CONSUMERS_URL") for k in env) for *_, env in plan)
    assert [port for _, port, *_ in plan] == [ports[name][0] for name in manifest.NAMES]


def test_a_taken_consumer_port_stops_make_run_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = _ports(monkeypatch)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", ports["segment"][1]))
        taken.listen()
        with pytest.raises(SystemExit, match="set SEGMENT_CONSUMERS_PORT"):
            planned_processes("api-apart")
        # the combined layout has no consumer process: that port is not its concern
        assert len(planned_processes("combined")) == 4
