"""Liveness, readiness and Prometheus metrics of a service."""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.auth import require
from shared.config import ServiceSettings
from shared.errors import PROBLEM_BASE
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)


#: how long the outbox relay may fail (a broker restart, a producer reconnecting) before
#: ``/readyz`` says so
RELAY_FAILING_REPORTED = 30.0


def readiness_answer(runtime: ServiceRuntime) -> tuple[int, dict[str, Any]]:
    """``/readyz``'s status code and body for ``runtime`` (the API's route and a consumer
    process's internal listener answer alike)."""
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
    settings = runtime.settings
    if settings.consumers_url:
        # an API whose consumers run in their own process: the service is ready when they are
        state = _consumer_process_state(settings.consumers_url)
        checks["consumer_process"] = state
        if state != "ok":
            failing = True
            reasons.append(f"consumer process ({settings.consumers_url}) {state}")
    status = "not ready" if failing else "degraded" if reasons else "ready"
    body: dict[str, Any] = {"service": runtime.name, "status": status, "checks": checks}
    if reasons:
        body["reasons"] = reasons
    return (503 if failing else 200), body


def _consumer_process_state(url: str) -> str:
    """``ok``, or why the consumer process at ``url`` is not ready (its own reasons)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/readyz", timeout=1.0) as resp:
            body = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            reasons = orjson.loads(exc.read()).get("reasons") or []
        except Exception:
            reasons = []
        return f"not ready: {'; '.join(reasons) or exc.code}"[:300]
    except Exception as exc:
        return f"not answering: {type(exc).__name__}"
    return "ok" if body.get("status") in ("ready", "degraded") else f"not ready: {body}"[:300]


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
        status_code, body = readiness_answer(request.app.state.runtime)
        return JSONResponse(body, status_code=status_code)

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


def start_metrics_listener(
    settings: ServiceSettings, runtime: ServiceRuntime | None = None
) -> Callable[[], None] | None:
    """Serve ``/metrics`` on the internal port of ``settings`` (if set), and with ``runtime``
    ``/healthz`` and ``/readyz`` too (a ``consume`` process, which has no API, is watched
    there); returns its stop. No key is asked: the port is internal."""
    if not settings.metrics_port:
        return None
    server = _InternalServer(
        (settings.metrics_host, settings.metrics_port), _internal_handler(runtime)
    )
    thread = threading.Thread(target=server.serve_forever, name="internal-http", daemon=True)
    thread.start()
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def _internal_handler(runtime: ServiceRuntime | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._route(body=True)

        def do_HEAD(self) -> None:
            self._route(body=False)

        def _route(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(), CONTENT_TYPE_LATEST, body)
            elif path == "/healthz" and runtime is not None:
                self._answer(200, orjson.dumps({"status": "ok"}), "application/json", body)
            elif path == "/readyz" and runtime is not None:
                status, answer = readiness_answer(runtime)
                self._answer(status, orjson.dumps(answer), "application/json", body)
            else:
                self.send_error(404)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            # problem+json, never the path (it may hold an e-mail or a phone number)
            if code == 501:  # a method other than GET and HEAD
                code = 405
            served = "/readyz, /healthz and /metrics" if runtime is not None else "/metrics"
            problem = {
                "type": PROBLEM_BASE + "not-found" if code == 404 else "about:blank",
                "title": HTTPStatus(code).phrase,
                "status": code,
                "detail": f"this internal port serves only GET {served}",
            }
            self.close_connection = True
            self._answer(code, orjson.dumps(problem), "application/problem+json", True)

        def _answer(self, status: int, data: bytes, content_type: str, body: bool) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client left (a probe that timed out): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _InternalServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # not the stdlib's traceback on stderr: one log line, like everything else
        log.debug("internal port: request from %s failed", client_address, exc_info=True)
