"""Where the services and the broker are, and the API key: options, then environment, then
the ``make run`` defaults (ports 8001-8004, broker 9092, key in ``$CRM_DATA_DIR/api_key``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shared import manifest

SERVICES = manifest.NAMES
DEFAULT_PORTS = manifest.DEFAULT_PORTS


@dataclass(frozen=True)
class Target:
    """The running system one command talks to."""

    urls: dict[str, str]
    api_key: str | None
    bootstrap_servers: str
    namespace: str
    timeout: float = 30.0

    def url(self, service: str, path: str) -> str:
        return self.urls[service].rstrip("/") + path


def default_url(service: str, env: dict[str, str]) -> str:
    """``CRM_<SERVICE>_URL``, else 127.0.0.1 on ``<SERVICE>_PORT`` (what ``make run`` uses)."""
    name = service.upper()
    explicit = env.get(f"CRM_{name}_URL")
    if explicit:
        return explicit
    port = env.get(f"{name}_PORT") or str(DEFAULT_PORTS[service])
    return f"http://127.0.0.1:{port}"


def default_api_key(env: dict[str, str]) -> str | None:
    """``CRM_API_KEY``, else the key ``make run`` generated into ``$CRM_DATA_DIR/api_key``."""
    if env.get("CRM_API_KEY"):
        return env["CRM_API_KEY"]
    path = Path(env.get("CRM_DATA_DIR", "var")) / "api_key"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def default_bootstrap(env: dict[str, str]) -> str:
    return env.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{env.get('CRM_BROKER_PORT', '9092')}"


def resolve(
    *,
    urls: dict[str, str | None],
    api_key: str | None,
    bootstrap_servers: str | None,
    namespace: str | None,
    timeout: float,
    env: dict[str, str] | None = None,
) -> Target:
    env = dict(os.environ) if env is None else env
    return Target(
        urls={s: urls.get(s) or default_url(s, env) for s in SERVICES},
        api_key=api_key or default_api_key(env),
        bootstrap_servers=bootstrap_servers or default_bootstrap(env),
        namespace=namespace if namespace is not None else env.get("CRM_TOPIC_NAMESPACE", ""),
        timeout=timeout,
    )
