"""Errors as RFC 9457 problem+json: the app's exception handlers and the answers they give
(a database that is away is a 503 to retry, never a 500)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from shared.errors import ProblemError, ServiceUnavailable, ValidationProblem
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def route_of(scope: Scope) -> str | None:
    """The matched route's template (``/v1/customers/{customer_id}``): a problem's
    ``instance`` and a log line name it, never the request path, whose ids may be
    personal data (an e-mail, a mobile). None before routing or when no route matched."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


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
        return problem_response(exc, route_of(request.scope))

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
            route_of(request.scope),
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
                route_of(request.scope),
            )
        slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            exc.status_code, "http-error"
        )
        return problem_response(
            ProblemError(str(exc.detail), status=exc.status_code, slug=slug, title=str(exc.detail)),
            route_of(request.scope),
        )

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        runtime: ServiceRuntime = request.app.state.runtime
        if await asyncio.to_thread(database_unavailable, runtime, exc):
            log.warning(
                "database unavailable on %s %s (%s)",
                request.method,
                route_of(request.scope) or "(no route)",
                type(exc).__name__,
            )
            return problem_response(DATABASE_UNAVAILABLE, route_of(request.scope))
        log.exception("unhandled error on %s %s", request.method, route_of(request.scope))
        return problem_response(INTERNAL_ERROR, route_of(request.scope))

    # by class, so that the inner exception middleware answers (the catch-all below runs in
    # the outermost one, which re-raises after answering: a 500 in the server's log)
    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, route_of(request.scope))
        return problem_response(INTERNAL_ERROR, route_of(request.scope))


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


INTERNAL_ERROR = ProblemError(
    "an unexpected error occurred; it has been logged",
    status=500,
    slug="internal-error",
    title="Internal server error",
)
