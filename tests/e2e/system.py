"""The four real service processes (``python -m devtools.devrun``) for end-to-end tests.

Each test gets its own data folder, topic namespace and free ports against the session's
broker. Helpers here talk to the services over HTTP with the admin key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from devtools.broker import EmbeddedBroker, free_port
from devtools.devrun import DEFAULT_LAYOUT, processes_of
from devtools.devrun import ready as service_ready
from devtools.testing import read_topic, unique, wait_for
from shared import manifest, topics
from shared.events import MessageRequestedEvent
from tests.conftest import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]
SERVICES = manifest.NAMES
HEADERS = {"X-API-Key": ADMIN_KEY}


class RunningSystem:
    def __init__(
        self,
        process: subprocess.Popen[bytes],
        ports: dict[str, int],
        log: Path,
        *,
        bootstrap_servers: str = "",
        namespace: str = "",
        data_dir: Path | None = None,
        internal_ports: dict[str, int] | None = None,
    ) -> None:
        self.process = process
        self.ports = ports
        #: ``{service: port}`` of its ``consume`` process's /readyz (layouts that have one)
        self.internal_ports = internal_ports or {}
        self.log = log
        self.bootstrap_servers = bootstrap_servers
        self.namespace = namespace
        self.data_dir = data_dir
        self.http = httpx.Client(headers=HEADERS, timeout=30)

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def get(self, service: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(self.url(service, path), **kwargs)

    def post(self, service: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(self.url(service, path), **kwargs)

    def put(self, service: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.put(self.url(service, path), **kwargs)

    def delete(self, service: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.delete(self.url(service, path), **kwargs)

    def read(self, topic: str, **kwargs: Any) -> list[Any]:
        """The decoded records of one of the platform's topics (its name without this
        system's namespace), as :func:`devtools.testing.read_topic` reads them."""
        return read_topic(self.bootstrap_servers, self.namespace + topic, **kwargs)

    def messages(
        self, campaign_id: str, *, expect: int | None = None, timeout: float = 5
    ) -> list[MessageRequestedEvent]:
        """The message requests one campaign published."""
        return self.read(
            topics.CAMPAIGN_MESSAGES,
            expect=expect,
            timeout=timeout,
            predicate=lambda e: e.data.campaign_id == campaign_id,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: ready(self), timeout=timeout, what="all four /readyz to answer 200")


def ready(system: RunningSystem) -> bool:
    """Every service's ``/readyz`` answers 200, each from that service, and so does every
    ``consume`` process's on its internal port."""
    return all(service_ready(port, service) for service, port in system.ports.items()) and all(
        service_ready(port, service) for service, port in system.internal_ports.items()
    )


def consumer_ports(
    ports: dict[str, int], env: dict[str, str]
) -> tuple[dict[str, str], dict[str, int]]:
    """The ``<NAME>_CONSUMERS_PORT`` settings (a free port each) for a devrun with these API
    ports, and ``{service: port}`` of those the layout in ``env`` runs a ``consume`` process on."""
    internal = {name: free_port() for name in ports}
    chosen = env.get("CRM_RUN_LAYOUT") or DEFAULT_LAYOUT
    running = {
        name: port
        for name, port in internal.items()
        if any(command == "consume" for _, command, _ in processes_of(name, {}, chosen))
    }
    return {f"{name.upper()}_CONSUMERS_PORT": str(port) for name, port in internal.items()}, running


@contextmanager
def running_system(
    broker: EmbeddedBroker, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[RunningSystem]:
    """Start ``python -m devtools.devrun`` on the session broker; SIGTERM it afterwards.

    ``extra_env``: more variables for every service (e.g. ``CRM_CLOCK_OFFSET_FILE``).
    """
    ports = {name: free_port() for name in SERVICES}
    namespace = unique("e2e") + "."
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "CRM_TOPIC_NAMESPACE": namespace,
        "CRM_DATA_DIR": str(data_dir),
        "CRM_API_KEY": ADMIN_KEY,
        "CRM_RUN_QUIET": "1",
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **(extra_env or {}),
    }
    settings, internal_ports = consumer_ports(ports, env)
    env.update(settings)
    log = tmp_path / "devrun.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools.devrun"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningSystem(
        process,
        ports,
        log,
        bootstrap_servers=broker.bootstrap_servers,
        namespace=namespace,
        data_dir=data_dir,
        internal_ports=internal_ports,
    )
    try:
        yield running
    finally:
        running.http.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
