"""The ASGI middleware every service app runs: body limits, the fast lane of hot routes,
request metrics (and the access log)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import access_log, metrics
from shared.auth import authorize
from shared.error_handlers import (
    DATABASE_UNAVAILABLE,
    INTERNAL_ERROR,
    database_unavailable,
    is_database_error,
    problem_response,
    route_of,
)
from shared.errors import PayloadTooLarge, ProblemError

log = logging.getLogger(__name__)


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
            await problem_response(too_large, route_of(scope))(scope, receive, send)
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
                    await problem_response(too_large, route_of(scope))(scope, receive, send)
                    return
                if not message.get("more_body"):
                    break
            await self.app(scope, replay_receive(bytes(body)), send)
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
                response = problem_response(INTERNAL_ERROR, scope["path"])
        await response(scope, receive, send)


def fast_route(
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


def replay_receive(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive
