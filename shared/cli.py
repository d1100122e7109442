"""The command line every service shares: ``python -m services.<name> serve|api|consume|migrate``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from shared.config import ServiceSettings
from shared.health import start_metrics_listener
from shared.logs import configure_logging
from shared.production_keys import production_key_problems
from shared.runtime import ServiceRuntime, freeze_startup_heap, tune_gc, tune_gil

log = logging.getLogger(__name__)


def run_cli(
    *,
    settings_factory: Callable[[], ServiceSettings],
    runtime_factory: Callable[[ServiceSettings], ServiceRuntime],
    app_factory: Callable[..., Any],
    extra_commands: dict[str, Callable[[ServiceRuntime, list[str]], int]] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse the command and run it; returns the process exit code."""
    settings = settings_factory()
    name = settings.service_name
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}")
    parser.add_argument(
        "command",
        choices=["serve", "api", "consume", "migrate", *(extra_commands or {})],
        help="serve: API + consumers (default); api: API only; consume: consumers only; "
        "migrate: apply database migrations and exit",
        nargs="?",
        default="serve",
    )
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    configure_logging(name, settings.log_level)
    refused = production_key_problems(settings)
    if refused:
        for problem in refused:
            log.error("%s: refusing to start in production: %s", name, problem)
        sys.stderr.write(
            f"{name}: refusing to start in production (CRM_ENVIRONMENT=production): "
            + "; ".join(refused)
            + "\n"
        )
        return 78  # EX_CONFIG

    if ns.command == "migrate":
        runtime = runtime_factory(settings)
        runtime.migrate()
        log.info("%s: database migrated (%s)", name, _safe_url(settings.resolved_database_url))
        runtime.db.dispose()
        return 0
    if extra_commands and ns.command in extra_commands:
        runtime = runtime_factory(settings)
        try:
            return extra_commands[ns.command](runtime, ns.args)
        finally:
            runtime.db.dispose()
    if ns.command == "consume":
        runtime = runtime_factory(settings)
        signal.signal(signal.SIGTERM, lambda *_: runtime.request_stop())
        signal.signal(signal.SIGINT, lambda *_: runtime.request_stop())
        tune_gc()
        tune_gil(settings)
        runtime.start(run_consumers=True, serving_api=False)
        # no API here: /metrics, /healthz and /readyz on <SERVICE>_METRICS_PORT, if set
        stop_internal = start_metrics_listener(settings, runtime)
        freeze_startup_heap()
        runtime.wait()
        if stop_internal is not None:
            stop_internal()
        runtime.stop()
        return 0

    import uvicorn

    if ns.command == "api":
        settings = settings.model_copy(update={"run_consumer": False})
    app = app_factory(settings)
    tune_gil(settings)
    tune_gc()  # the app's lifespan freezes what its start-up adds (shared.api.build_app)
    uvicorn.run(app, **uvicorn_options(settings))
    return 0


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """How the API is served. Forwarded headers are trusted only from the addresses in
    ``CRM_FORWARDED_ALLOW_IPS`` (uvicorn's default trusts them from 127.0.0.1, which let any
    local client choose the address its failed authentications are counted on)."""
    trusted = (settings.forwarded_allow_ips or "").strip()
    return {
        "host": settings.host,
        "port": settings.resolved_port,
        "log_level": settings.log_level.lower(),
        "log_config": None,  # uvicorn's loggers go through ours (shared.logs: JSON, one line)
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
    }


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
