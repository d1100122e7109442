"""A service's FastAPI app: :func:`build_app` assembles the runtime, routers, lifespan,
error handlers (:mod:`shared.error_handlers`), middleware (:mod:`shared.middleware`,
:mod:`shared.idempotency`), health and metrics (:mod:`shared.health`) and API keys
(:mod:`shared.auth`). What routes need is importable from here."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response, params
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from shared.apikeys import KeyDirectory, KeyFeed, UsageReporter
from shared.auth import Caller, Principal, authenticate, authorize, require
from shared.db import Database
from shared.docs_ui import serve_docs_locally
from shared.error_handlers import install_error_handlers, problem_response
from shared.health import health_router, start_metrics_listener
from shared.idempotency import IdempotencyMiddleware
from shared.middleware import (
    BodyLimitMiddleware,
    FastLaneMiddleware,
    MetricsMiddleware,
    fast_route,
)
from shared.openapi_problems import document_problems
from shared.openapi_security import declare_api_key_security
from shared.pagination import configure_cursor_key
from shared.ratelimit import RateLimiter
from shared.request_id import RequestIdMiddleware
from shared.runtime import ServiceRuntime, freeze_startup_heap
from shared.strict_input import StrictJsonMiddleware

__all__ = [
    "Caller",
    "Principal",
    "authenticate",
    "authorize",
    "build_app",
    "health_router",
    "install_error_handlers",
    "problem_response",
    "require",
    "runtime_dependency",
    "runtime_of",
    "start_metrics_listener",
]


R = TypeVar("R", bound=ServiceRuntime)


def runtime_of(request: Request, kind: type[R]) -> R:
    """The runtime of the app serving ``request``, as the service's own runtime class
    ``kind`` (its database, publisher, relay and typed parts)."""
    runtime = request.app.state.runtime
    if not isinstance(runtime, kind):
        raise TypeError(f"the app runs a {type(runtime).__name__}, not a {kind.__name__}")
    return runtime


def runtime_dependency(kind: type[R]) -> Any:
    """A dependency giving the app's runtime as ``kind``: a service declares
    ``RuntimeDep = Annotated[TheRuntime, runtime_dependency(TheRuntime)]`` for its routes."""

    # async: a plain attribute read, not worth a thread-pool hop
    async def dependency(request: Request) -> R:
        return runtime_of(request, kind)

    return Depends(dependency)


async def hot_read(
    db: Database, read: Callable[..., bytes], *args: Any, on_loop: bool = True
) -> Response:
    """A hot read's JSON body (serialised once, not validated again by FastAPI).

    On SQLite a read of one stored row is a page-cache lookup (~0.03-0.2 ms): done on the
    event loop, it saves the thread-pool hop, which cost the process more than the read
    (bench_profile, bench_e2e). A networked database's round trip blocks, and so does a
    read that computes (``on_loop=False``): those keep the hop."""
    if on_loop and db.is_sqlite:
        body = read(*args)
    else:
        body = await run_in_threadpool(read, *args)
    return Response(body, media_type="application/json")


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
        fetch_max_wait_ms=settings.kafka_side_fetch_max_wait_ms,
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
            stop_metrics = start_metrics_listener(settings, runtime)
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
        lanes = {(m, p): fast_route(routers, m, p) for m, p in fast_routes}
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
