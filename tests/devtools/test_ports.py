"""Test ports: one process never hands a port out twice, and readiness names its service."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devtools import broker
from devtools.broker import free_port
from devtools.devrun import ready


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


@contextmanager
def _answering(body: dict[str, object], status: int = 200) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_readiness_is_the_named_services() -> None:
    with _answering({"service": "segment", "status": "ready"}) as port:
        assert ready(port)
        assert ready(port, "segment")
        # another service on the port (one that could not bind it is restarting) is not ready
        assert not ready(port, "ingest")
    with _answering({"service": "ingest", "status": "not ready"}, status=503) as port:
        assert not ready(port, "ingest")
    assert not ready(free_port(), "ingest")  # nothing listens
