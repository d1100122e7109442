"""App factory pieces every service uses: lifespan, health, metrics, errors, auth, idempotency."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import access_log, metrics
from shared.apikeys import KeyDirectory, KeyFeed, UsageReporter
from shared.auth import Principal, authenticate, authorize, key_fingerprint, require
from shared.config import ServiceSettings
from shared.db import PLATFORM_TABLES
from shared.docs_ui import serve_docs_locally
from shared.errors import PayloadTooLarge, ProblemError, ServiceUnavailable, ValidationProblem
from shared.events import utcnow
from shared.openapi_problems import document_problems
from shared.openapi_security import declare_api_key_security
from shared.pagination import configure_cursor_key
from shared.ratelimit import RateLimiter
from shared.request_id import RequestIdMiddleware
from shared.runtime import ServiceRuntime, freeze_startup_heap
from shared.strict_input import StrictJsonMiddleware

log = logging.getLogger(__name__)

__all__ = ["Principal", "authenticate", "authorize", "build_app", "require", "runtime_of"]

PROBLEM_JSON = "application/problem+json"


def runtime_of(request: Request) -> ServiceRuntime:
    """The service runtime (database, publisher, relay) behind the app serving ``request``."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def problem_response(error: ProblemError, instance: str | None = None) -> JSONResponse:
    headers: dict[str, str] | None = getattr(error, "headers", None)
    if error.status == 401:
        headers = {"WWW-Authenticate": "ApiKey"}
    return JSONResponse(
        error.to_problem(instance),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as RFC 9457 problem+json with a stable ``type``."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the same {field, code, message} items as ingest's record rejections; the field is
        # the dotted path inside the body ("items[2].sku"), or "query.limit" / "path.id"
        errors = [
            {
                "field": _field_of(err),
                "code": str(err.get("type")),
                "message": str(err.get("msg")),
            }
            for err in exc.errors()
        ]
        return problem_response(
            ProblemError(
                f"{len(errors)} invalid field(s)",
                status=422,
                slug="validation-error",
                title="The request is not valid",
                errors=errors,
            ),
            request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's answer when reading the JSON body raised (e.g. nested too deeply):
            # the same problem ingest reports for a body that is not usable JSON
            return problem_response(
                ValidationProblem(
                    "the body is not valid JSON (or is nested too deeply)",
                    slug="malformed-json",
                    title="The body is not JSON",
                ),
                request.url.path,
            )
        slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            exc.status_code, "http-error"
        )
        return problem_response(
            ProblemError(str(exc.detail), status=exc.status_code, slug=slug, title=str(exc.detail)),
            request.url.path,
        )

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        runtime: ServiceRuntime = request.app.state.runtime
        if await asyncio.to_thread(database_unavailable, runtime, exc):
            log.warning(
                "database unavailable on %s %s (%s)",
                request.method,
                request.url.path,
                type(exc).__name__,
            )
            return problem_response(DATABASE_UNAVAILABLE, request.url.path)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(_INTERNAL_ERROR, request.url.path)

    # by class, so that the inner exception middleware answers (the catch-all below runs in
    # the outermost one, which re-raises after answering: a 500 in the server's log)
    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(_INTERNAL_ERROR, request.url.path)


#: the answer while the database is away: retry after a few seconds, never a 500
DATABASE_UNAVAILABLE = ServiceUnavailable(
    "the database is not answering; retry shortly",
    slug="database-unavailable",
    title="Database unavailable",
)
DATABASE_UNAVAILABLE.headers = {"Retry-After": "5"}  # type: ignore[attr-defined]


def _database_errors() -> tuple[type[Exception], ...]:
    import sqlite3

    kinds: list[type[Exception]] = [
        OperationalError,
        InterfaceError,
        DisconnectionError,
        sqlite3.OperationalError,
        sqlite3.InterfaceError,
    ]
    try:
        import psycopg

        kinds += [psycopg.OperationalError, psycopg.InterfaceError]
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    return tuple(kinds)


#: connection-level database errors, wrapped by SQLAlchemy or straight from the driver
DATABASE_ERRORS = _database_errors()


def is_database_error(exc: BaseException) -> bool:
    """A connection-level database error (``engine.raw_connection()`` on the fast read
    paths raises the driver's own, unwrapped)."""
    return isinstance(exc, DATABASE_ERRORS)


def database_unavailable(runtime: ServiceRuntime, exc: BaseException) -> bool:
    """Whether a database error means "the database is away or busy" (a 503 to retry)
    rather than a fault in the request or the code (a 500)."""
    if "locked" in str(exc) or "busy" in str(exc):
        return True  # SQLite: another writer held the lock past busy_timeout
    try:
        runtime.db.ping()
    except Exception:
        return True
    return False


def _field_of(error: Any) -> str:
    loc = list(error.get("loc", ()))
    if loc and loc[0] == "body":
        loc = loc[1:]
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    inner = (error.get("ctx") or {}).get("field")
    if isinstance(inner, str):  # a RequestModel text rule names the field it found
        text = f"{text}.{inner}" if text else inner
    return text


_INTERNAL_ERROR = ProblemError(
    "an unexpected error occurred; it has been logged",
    status=500,
    slug="internal-error",
    title="Internal server error",
)


# --------------------------------------------------------------------------- middleware


#: chunked bodies up to this limit are read whole before the app sees them (see below);
#: larger limits (file uploads) are enforced while the app streams the body
_BUFFERED_BODY_MAX = 64 * 1024 * 1024


class BodyLimitMiddleware:
    """Answers 413 problem+json when a body exceeds the limit (by header or while streaming)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = list(overrides)

    def _limit(self, path: str) -> int:
        for prefix, limit in self.overrides:
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_large = ProblemError(
            f"the body exceeds {limit} bytes",
            status=413,
            slug="payload-too-large",
            title="The request is too large",
            max_bytes=limit,
        )
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await problem_response(too_large, scope.get("path"))(scope, receive, send)
            return
        if (
            declared is None
            and limit <= _BUFFERED_BODY_MAX
            and scope.get("method") in ("POST", "PUT", "PATCH")
        ):
            # a chunked body of unknown length: read it here, so that one over the limit is
            # a 413 whoever parses it (FastAPI answers 400 to an error raised while it reads)
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body.extend(message.get("body", b""))
                if len(body) > limit:
                    await problem_response(too_large, scope.get("path"))(scope, receive, send)
                    return
                if not message.get("more_body"):
                    break
            await self.app(scope, _replay_receive(bytes(body)), send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"the body exceeds {limit} bytes", max_bytes=limit)
            return message

        await self.app(scope, limited_receive, send)


class FastLaneMiddleware:
    """Dispatches a few hot routes straight from the middleware stack.

    FastAPI's routing (matching every route in turn) and dependency resolution cost about
    as much as storing a single order (~40 us a request on this machine), so the routes
    named here are called directly: an exact ``(method, path)`` lookup, the route's
    ``require(...)`` scopes checked with :func:`authorize`, then its endpoint. The route
    stays declared on the router, which documents it in OpenAPI; the outer middleware
    (metrics, body limit, idempotency) applies as to any route, and errors leave as the
    same problem+json. Only routes whose endpoint takes nothing but the ``Request`` and
    returns a ``Response``, and whose only dependencies are ``require(...)``, qualify;
    anything else is refused when the app is built.
    """

    def __init__(
        self, app: ASGIApp, routes: dict[tuple[str, str], tuple[APIRoute, tuple[str, ...]]]
    ) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if hit is None:
            await self.app(scope, receive, send)
            return
        route, scopes = hit
        scope["route"] = route  # as the router would set it (metrics label by route path)
        request = Request(scope, receive, send)
        try:
            authorize(request, scopes)
            response = await route.endpoint(request)
        except ProblemError as exc:
            response = problem_response(exc, scope["path"])
        except Exception as exc:
            runtime = scope["app"].state.runtime
            if is_database_error(exc) and await asyncio.to_thread(
                database_unavailable, runtime, exc
            ):
                response = problem_response(DATABASE_UNAVAILABLE, scope["path"])
            else:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                response = problem_response(_INTERNAL_ERROR, scope["path"])
        await response(scope, receive, send)


def _fast_route(
    routers: Sequence[APIRouter], method: str, path: str
) -> tuple[APIRoute, tuple[str, ...]]:
    """The declared route for ``method path`` and the scopes it requires, if it qualifies."""
    for route in (r for router in routers for r in router.routes):
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ()):
            break
    else:
        raise ValueError(f"fast lane: no route {method} {path}")
    params = list(inspect.signature(route.endpoint).parameters.values())
    scopes: list[str] = []
    for dependency in route.dependencies:
        scopes.extend(getattr(dependency.dependency, "scopes", None) or ())
        if not hasattr(dependency.dependency, "scopes"):
            raise ValueError(f"fast lane: {method} {path} has a dependency other than require()")
    if (
        len(params) != 1
        or params[0].annotation not in (Request, "Request")
        or not inspect.iscoroutinefunction(route.endpoint)
    ):
        raise ValueError(f"fast lane: {method} {path} must be `async def (request: Request)`")
    return route, tuple(scopes)


class MetricsMiddleware:
    """Request count and latency per route template; with ``access_log``, also one
    :mod:`shared.access_log` line per request."""

    def __init__(self, app: ASGIApp, service: str, access_log: bool = False) -> None:
        self.app = app
        self.service = service
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            metrics.HTTP_REQUESTS.labels(self.service, method, path, str(status["code"])).inc()
            seconds = time.perf_counter() - started
            metrics.HTTP_LATENCY.labels(self.service, method, path).observe(seconds)
            if self.access_log:
                access_log.log_request(method, path, status["code"], seconds)


#: the longest ``Idempotency-Key`` accepted (the column holds 255 characters)
IDEMPOTENCY_KEY_MAX = 255


class IdempotencyMiddleware:
    """Honours ``Idempotency-Key`` on POST/PUT/PATCH.

    The first request with a key runs and its response is stored; a repeat with the
    same key and the same body gets the stored response (``Idempotent-Replayed:
    true``); the same key with a different body is a 409; a repeat arriving while
    the first still runs waits for it. Keys are scoped per API key and path. A 5xx
    response is not stored, so the client may retry. Multipart uploads are hashed
    like any body, so keep them under the body limit.

    A response marked ``Cache-Control: no-store`` (one that holds a secret shown only
    once, such as a new API key) is never stored: only its status and ``Location`` are
    kept, and a repeat is answered ``409 idempotency-secret-not-replayed`` naming them.
    """

    def __init__(self, app: ASGIApp, wait_seconds: float = 30.0) -> None:
        self.app = app
        self.wait_seconds = wait_seconds
        self.table = PLATFORM_TABLES.tables["idempotency_keys"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw_key = headers.get(b"idempotency-key")
        if not raw_key:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if len(key) > IDEMPOTENCY_KEY_MAX:
            # cut to fit, two long keys sharing their first 255 characters would collide
            refused = problem_response(
                ValidationProblem(
                    f"the Idempotency-Key is {len(key)} characters; at most "
                    f"{IDEMPOTENCY_KEY_MAX} are accepted",
                    errors=[
                        {
                            "field": "header.Idempotency-Key",
                            "code": "too_long",
                            "message": f"at most {IDEMPOTENCY_KEY_MAX} characters",
                        }
                    ],
                ),
                instance=scope.get("path"),
            )
            await refused(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        api_key = headers.get(b"x-api-key", b"").decode("latin-1")
        scope_id = f"{key_fingerprint(api_key)}:{scope.get('method')}:{scope.get('path')}"[:255]
        request_hash = hashlib.sha256(bytes(body)).hexdigest()
        runtime: ServiceRuntime = scope["app"].state.runtime

        try:
            claimed = await asyncio.to_thread(self._claim, runtime, key, scope_id, request_hash)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            # the key cannot be claimed while the database is away: nothing ran, retry
            await problem_response(DATABASE_UNAVAILABLE, scope.get("path"))(scope, receive, send)
            return
        if claimed is not True:
            response = await self._await_first(runtime, key, scope_id, request_hash, claimed)
            await response(scope, _replay_receive(bytes(body)), send)
            return

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray()}

        async def capture_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.lower() in (b"content-type", b"location", b"cache-control")
                ]
            elif message["type"] == "http.response.body":
                captured["body"].extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, _replay_receive(bytes(body)), capture_send)
        except BaseException:
            await asyncio.to_thread(self._release, runtime, key, scope_id)
            raise
        if captured["status"] >= 500:
            await asyncio.to_thread(self._release, runtime, key, scope_id)
        elif _holds_secret(captured["headers"]):
            status, stored_body, stored_headers = _secret_withheld(
                captured["status"], captured["headers"], scope.get("path")
            )
            await asyncio.to_thread(
                self._complete, runtime, key, scope_id, status, stored_body, stored_headers
            )
        else:
            await asyncio.to_thread(
                self._complete,
                runtime,
                key,
                scope_id,
                captured["status"],
                bytes(captured["body"]),
                captured["headers"],
            )

    def _claim(self, runtime: ServiceRuntime, key: str, scope_id: str, request_hash: str) -> Any:
        try:
            with runtime.db.unit_of_work() as session:
                session.execute(
                    insert(self.table).values(
                        key=key, scope=scope_id, request_hash=request_hash, created_at=utcnow()
                    )
                )
            return True
        except IntegrityError:
            return None

    def _load(self, runtime: ServiceRuntime, key: str, scope_id: str) -> Any:
        with runtime.db.sessions() as session:
            return session.execute(
                select(self.table).where(self.table.c.key == key, self.table.c.scope == scope_id)
            ).first()

    async def _await_first(
        self, runtime: ServiceRuntime, key: str, scope_id: str, request_hash: str, _: Any
    ) -> Response:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            row = await asyncio.to_thread(self._load, runtime, key, scope_id)
            if row is None:
                # the first attempt failed and released the key: tell the client to retry
                return problem_response(
                    ProblemError(
                        "the first request with this key failed; retry",
                        status=409,
                        slug="idempotency-retry",
                        title="Retry the request",
                    )
                )
            if row.request_hash != request_hash:
                return problem_response(
                    ProblemError(
                        "this Idempotency-Key was used with a different request body",
                        status=409,
                        slug="idempotency-key-reused",
                        title="Idempotency key reused",
                    )
                )
            if row.status_code is not None:
                headers = dict(row.response_headers or [])
                headers["Idempotent-Replayed"] = "true"
                return Response(
                    row.response_body or b"", status_code=row.status_code, headers=headers
                )
            if time.monotonic() > deadline:
                return problem_response(
                    ProblemError(
                        "a request with this Idempotency-Key is still running",
                        status=409,
                        slug="idempotency-in-progress",
                        title="Request in progress",
                    )
                )
            await asyncio.sleep(0.05)

    def _complete(
        self,
        runtime: ServiceRuntime,
        key: str,
        scope_id: str,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]],
    ) -> None:
        with runtime.db.unit_of_work() as session:
            session.execute(
                update(self.table)
                .where(self.table.c.key == key, self.table.c.scope == scope_id)
                .values(
                    status_code=status,
                    response_body=body,
                    response_headers=headers,
                    completed_at=utcnow(),
                )
            )

    def _release(self, runtime: ServiceRuntime, key: str, scope_id: str) -> None:
        with runtime.db.unit_of_work() as session:
            session.execute(
                delete(self.table).where(self.table.c.key == key, self.table.c.scope == scope_id)
            )


def _holds_secret(headers: list[tuple[str, str]]) -> bool:
    return any(k.lower() == "cache-control" and "no-store" in v.lower() for k, v in headers)


def _secret_withheld(
    status: int, headers: list[tuple[str, str]], path: str | None
) -> tuple[int, bytes, list[tuple[str, str]]]:
    """What an idempotency record keeps of a response holding a secret: not the body, only
    the first answer's status and ``Location``, as the 409 a repeat gets."""
    location = next((v for k, v in headers if k.lower() == "location"), None)
    extra: dict[str, Any] = {"first_status": status}
    if location is not None:
        extra["location"] = location
    problem = problem_response(
        ProblemError(
            f"the first request with this Idempotency-Key was answered {status}; that answer "
            "held a secret, which is shown only once and never stored",
            status=409,
            slug="idempotency-secret-not-replayed",
            title="The answer held a secret and is not replayed",
            **extra,
        ),
        path,
    )
    kept = [("content-type", PROBLEM_JSON)] + ([("location", location)] if location else [])
    return 409, bytes(problem.body), kept


def _replay_receive(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive


# --------------------------------------------------------------------------- the app


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
        the broker answers; 200 ``degraded`` while only the broker is away (the API serves
        from the database and events wait in the outbox); ``reasons`` say why."""
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
        for name, state in checks.get("consumers", {}).items():
            if state.startswith("stalled"):
                # while the broker is away every consumer waits: that is not their fault
                failing = failing or broker_ok
                reasons.append(f"consumer {name} {state}")
        status = "not ready" if failing else "degraded" if reasons else "ready"
        body: dict[str, Any] = {"status": status, "checks": checks}
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


def build_app(
    *,
    runtime: ServiceRuntime,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    max_body_bytes: int = 1024 * 1024,
    body_limit_overrides: Sequence[tuple[str, int]] = (),
    on_startup: Callable[[], Awaitable[None] | None] | None = None,
    start_runtime: bool = True,
    fast_routes: Sequence[tuple[str, str]] = (),
    self_checked_json: Sequence[str] = (),
) -> FastAPI:
    """Assemble a service's FastAPI app around its runtime; ``fast_routes`` (``(method,
    path)`` of declared routes) are dispatched by :class:`FastLaneMiddleware`;
    ``self_checked_json``: path prefixes of routes that parse their JSON bodies themselves
    and check duplicate keys (``shared.strict_input``)."""

    settings = runtime.settings
    configure_cursor_key(
        settings.cursor_secret.get_secret_value()
        if settings.cursor_secret is not None
        else settings.api_key.get_secret_value()
        if settings.api_key is not None
        else None
    )
    directory = KeyDirectory()
    feed = KeyFeed(
        settings.kafka_bootstrap_servers,
        directory,
        settings.topic_namespace,
        partitions=settings.topic_partitions,
        replication_factor=settings.replication_factor,
    )
    usage = UsageReporter(
        directory, runtime.publisher, runtime.name, settings.api_key_usage_report_seconds
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop_metrics = None
        if start_runtime:
            await asyncio.to_thread(runtime.start)
            feed.start()
            usage.start()
            stop_metrics = start_metrics_listener(settings)
        if on_startup is not None:
            result = on_startup()
            if result is not None:
                await result
        freeze_startup_heap()
        try:
            yield
        finally:
            if start_runtime:
                feed.stop(
                    timeout=0.2
                )  # a daemon thread: blocked on an absent broker, it ends later
                usage.stop()
                if stop_metrics is not None:
                    stop_metrics()
                await asyncio.to_thread(runtime.stop)

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        default_response_class=_OrjsonResponse,
        docs_url=None,  # served from local assets below, not a CDN
        redoc_url=None,
    )
    serve_docs_locally(app, title)
    app.state.runtime = runtime
    app.state.api_keys = settings.all_api_keys()
    app.state.key_directory = directory
    app.state.key_feed = feed
    app.state.rate_limiter = RateLimiter(settings.rate_limits, settings.failed_auth_limit)
    install_error_handlers(app)
    app.include_router(health_router(settings))
    for router in routers:
        app.include_router(router)
    if fast_routes:  # checked now: a route that does not qualify fails the build
        lanes = {(m, p): _fast_route(routers, m, p) for m, p in fast_routes}
        app.add_middleware(FastLaneMiddleware, routes=lanes)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(
        StrictJsonMiddleware,
        form_routes=_form_routes(routers),
        self_checked_prefixes=tuple(self_checked_json),
        guarded_routes=_guarded_routes(routers),
    )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=max_body_bytes, overrides=tuple(body_limit_overrides)
    )
    app.add_middleware(MetricsMiddleware, service=runtime.name, access_log=settings.access_log)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line of a request has its id
    declare_api_key_security(app)
    document_problems(app)  # after the security scheme: it reads each operation's scopes
    return app


def _form_routes(routers: Sequence[APIRouter]) -> list[tuple[frozenset[str], re.Pattern[str]]]:
    """``(methods, path pattern)`` of the routes whose body is a form (uploads)."""
    found = []
    for route in (r for router in routers for r in router.routes):
        if isinstance(route, APIRoute) and any(
            isinstance(param.field_info, params.Form) for param in route.dependant.body_params
        ):
            found.append((frozenset(route.methods or ()), route.path_regex))
    return found


def _guarded_routes(
    routers: Sequence[APIRouter],
) -> list[tuple[frozenset[str], re.Pattern[str], tuple[str, ...]]]:
    """``(methods, path pattern, scopes)`` of the routes that need an API key."""
    from shared.openapi_security import route_scopes

    found = []
    for route in (r for router in routers for r in router.routes):
        if isinstance(route, APIRoute) and (scopes := route_scopes(route)) is not None:
            found.append((frozenset(route.methods or ()), route.path_regex, scopes))
    return found


class _OrjsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS, default=_default)


def _default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
