"""Liveness, readiness and Prometheus metrics of a service."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server

from shared.auth import require
from shared.config import ServiceSettings
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)


#: how long the outbox relay may fail (a broker restart, a producer reconnecting) before
#: ``/readyz`` says so
RELAY_FAILING_REPORTED = 30.0


def health_router(settings: ServiceSettings | None = None) -> APIRouter:
    """Liveness, readiness and (unless it has its own internal port) ``/metrics``, which
    asks for the ``metrics:read`` scope when ``CRM_METRICS_REQUIRE_KEY`` is set."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: database answers, no consumer stalled")
    def readyz(request: Request) -> JSONResponse:
        """Readiness: 503 when the database does not answer, or a consumer is stalled while
        the broker answers; 200 ``degraded`` while only the broker is away, or while the
        outbox relay has failed for over 30 s though the broker answers (the API serves
        from the database and events wait in the outbox); ``reasons`` say why; ``service``
        names the service that answers."""
        runtime: ServiceRuntime = request.app.state.runtime
        checks = runtime.readiness()
        reasons: list[str] = []
        failing = False
        if checks["database"] != "ok":
            failing = True
            reasons.append(f"database {checks['database']}")
        broker_ok = checks["broker"] == "ok"
        if not broker_ok:
            reasons.append("broker unreachable: events wait in the outbox")
        elif checks["topics"] != "ok":
            reasons.append(f"topics {checks['topics']}")
        relay = checks.get("outbox_relay", "ok")
        if relay != "ok" and broker_ok and runtime.relay.failing_for() > RELAY_FAILING_REPORTED:
            # the broker answers, yet events cannot leave: say so (the API still serves)
            reasons.append(f"outbox relay {relay}: events wait in the outbox")
        for name, state in checks.get("consumers", {}).items():
            if state.startswith("stalled"):
                # while the broker is away every consumer waits: that is not their fault
                failing = failing or broker_ok
                reasons.append(f"consumer {name} {state}")
        status = "not ready" if failing else "degraded" if reasons else "ready"
        body: dict[str, Any] = {"service": runtime.name, "status": status, "checks": checks}
        if reasons:
            body["reasons"] = reasons
        return JSONResponse(body, status_code=503 if failing else 200)

    if settings is not None and settings.metrics_port:
        return router  # served by the internal listener only (start_metrics_listener)
    guards = (
        [require("metrics:read")] if settings is not None and settings.metrics_require_key else []
    )

    @router.get(
        "/metrics", summary="Prometheus metrics", response_class=Response, dependencies=guards
    )
    async def metrics_endpoint() -> Response:
        """Prometheus metrics in the text exposition format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def start_metrics_listener(settings: ServiceSettings) -> Callable[[], None] | None:
    """Serve ``/metrics`` on the internal port of ``settings`` (if set); returns its stop."""
    if not settings.metrics_port:
        return None
    server, thread = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
