"""``Idempotency-Key`` on POST/PUT/PATCH: the first answer is stored and replayed."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from fastapi.responses import Response
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import key_fingerprint
from shared.db import PLATFORM_TABLES
from shared.error_handlers import (
    DATABASE_UNAVAILABLE,
    PROBLEM_JSON,
    is_database_error,
    problem_response,
    route_of,
)
from shared.errors import ProblemError, ValidationProblem
from shared.events import utcnow
from shared.middleware import replay_receive
from shared.runtime import ServiceRuntime

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
                instance=route_of(scope),
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
            await problem_response(DATABASE_UNAVAILABLE, route_of(scope))(scope, receive, send)
            return
        if claimed is not True:
            response = await self._await_first(runtime, key, scope_id, request_hash, claimed)
            await response(scope, replay_receive(bytes(body)), send)
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
            await self.app(scope, replay_receive(bytes(body)), capture_send)
        except BaseException:
            await asyncio.to_thread(self._release, runtime, key, scope_id)
            raise
        if captured["status"] >= 500:
            await asyncio.to_thread(self._release, runtime, key, scope_id)
        elif _holds_secret(captured["headers"]):
            status, stored_body, stored_headers = _secret_withheld(
                captured["status"], captured["headers"], route_of(scope)
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
