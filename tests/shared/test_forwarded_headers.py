"""X-Forwarded-For is believed only from configured proxies (CRM_FORWARDED_ALLOW_IPS):
by default the connection's own address is the client's, so a client cannot choose the
address its failed authentications are counted on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from devtools.broker import free_port
from devtools.testing import wait_for
from shared.cli import uvicorn_options
from shared.config import ServiceSettings


class EchoSettings(ServiceSettings):
    service_name: ClassVar[str] = "echo"
    default_port: ClassVar[int] = 1


async def client_host(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.client.host if request.client else "")


@contextmanager
def serving(settings: ServiceSettings) -> Iterator[str]:
    """Serve an app that echoes the client address, with the options the services use."""
    app = Starlette(routes=[Route("/", client_host)])
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10)
        yield f"http://127.0.0.1:{settings.resolved_port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize(("trusted", "seen"), [(None, "127.0.0.1"), ("127.0.0.1", "203.0.113.9")])
def test_forwarded_for_counts_only_from_a_trusted_proxy(
    tmp_path: Path, trusted: str | None, seen: str
) -> None:
    settings = EchoSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        host="127.0.0.1",
        port=free_port(),
        forwarded_allow_ips=trusted,
    )
    with serving(settings) as url:
        answer = httpx.get(url, headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.text == seen
