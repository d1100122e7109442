"""Test ports: one process never hands a port out twice, and readiness names its service."""

from __future__ import annotations

import socket

import pytest

from devtools import broker
from devtools.broker import free_port
from devtools.devrun import ready
from devtools.testing import answering


def test_free_port_never_repeats_and_is_bindable() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    for port in ports[-5:]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_an_xdist_worker_draws_from_its_own_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    block = range(23000, 24000)
    ports = [free_port() for _ in range(20)]
    assert all(port in block for port in ports), ports
    assert len(set(ports)) == len(ports)
    # a port someone listens on is passed over
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = next(p for p in block if p not in broker._handed_out)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert free_port() != port


def test_readiness_is_the_named_services() -> None:
    with answering({"service": "segment", "status": "ready"}) as port:
        assert ready(port)
        assert ready(port, "segment")
        # another service on the port (one that could not bind it is restarting) is not ready
        assert not ready(port, "ingest")
    with answering({"service": "ingest", "status": "not ready"}, status=503) as port:
        assert not ready(port, "ingest")
    assert not ready(free_port(), "ingest")  # nothing listens
