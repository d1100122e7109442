"""Strict request bodies on every service: a body is JSON, declared as JSON, without
duplicate keys.

- A POST/PUT/PATCH with a body and a content type other than ``application/json`` (or
  ``application/*+json``) is ``415 unsupported-media-type``. Routes that take a form
  (multipart uploads) are left to parse their own bodies. A request without a body is not
  checked (``POST .../launch``), nor one without credentials (its 401 comes first).
- A JSON object with the same key twice is ``422 duplicate-key``: JSON parsers keep the last
  one silently, so a client could not tell which value counted.

Authentication comes first: on a route that needs an API key, a refused body is answered
only once the caller is known and allowed (no key: 401, lacking scope: 403), so a caller
without a key learns nothing about what a route accepts (``guarded_routes``).

Routes that parse their own bodies (ingest's record routes: orjson, for speed) check
duplicate keys themselves with :func:`first_duplicate_key` and are named in
``self_checked_prefixes``, so the body is parsed once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.error_handlers import problem_response
from shared.errors import PayloadTooLarge, ProblemError, ValidationProblem
from shared.middleware import replay_receive


class DuplicateKey(ValueError):
    """A JSON object holds the same key twice; ``path`` is where (``orders[3].buyer``)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears twice in one object")
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return found


#: the end of a key: a quote, optional blanks, a colon (inside strings only as \": see below)
_KEY_END = re.compile(rb'"[ \t\r\n]*:')


def _keys_in(value: Any) -> int:
    if type(value) is dict:
        return len(value) + sum(_keys_in(v) for v in value.values())
    if type(value) is list:
        return sum(_keys_in(v) for v in value)
    return 0


def first_duplicate_key(raw: bytes | str, parsed: Any) -> str | None:
    """The first key that appears twice in one object of the JSON text ``raw`` (which
    ``parsed`` is the parse of), else None.

    Fast path: a duplicate key makes the parse hold fewer keys than the text has key tokens
    (counted by a regular expression, which can only over-count: ``\\":`` inside a string).
    Only when the counts differ is the text parsed again to find the key."""
    text = raw.encode() if isinstance(raw, str) else raw
    if len(_KEY_END.findall(text)) == _keys_in(parsed):
        return None
    try:
        json.loads(text, object_pairs_hook=_no_duplicates)
    except DuplicateKey as exc:
        return exc.key
    except (ValueError, RecursionError):
        return None
    return None


def duplicate_key_problem(key: str) -> ValidationProblem:
    """The 422 for a body with a duplicate key (the key's name is not echoed: it may be
    anything the client sent)."""
    return ValidationProblem(
        "an object in the body holds the same key twice",
        slug="duplicate-key",
        title="The body holds a duplicate key",
        errors=[
            {
                "field": "",
                "code": "json.duplicate_key",
                "message": "an object holds the same key twice (JSON parsers would keep only "
                "one of the values)",
            }
        ],
    )


def _media_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


def _is_json(media: bytes) -> bool:
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class StrictJsonMiddleware:
    """415 for a body that is not declared as JSON (forms on form routes), 422 for a JSON
    body with a duplicate key. See the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        form_routes: Sequence[tuple[frozenset[str], re.Pattern[str]]] = (),
        self_checked_prefixes: Sequence[str] = (),
        guarded_routes: Sequence[tuple[frozenset[str], re.Pattern[str], tuple[str, ...]]] = (),
    ) -> None:
        self.app = app
        self.guarded = list(guarded_routes)
        self.form_routes = list(form_routes)
        self.self_checked = tuple(self_checked_prefixes)

    def _refuse_unauthorised(self, scope: Scope, receive: Receive) -> ProblemError | None:
        """The 401/403/429 the route's own check would answer, else None: authentication
        comes before any judgement of the body."""
        from starlette.requests import Request

        from shared.auth import authorize

        method, path = scope.get("method"), scope.get("path", "")
        for methods, rx, scopes in self.guarded:
            if method in methods and rx.match(path):
                try:
                    authorize(Request(scope, receive), scopes)
                except ProblemError as exc:
                    return exc
                return None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or method not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        length = next((v for k, v in headers if k == b"content-length"), None)
        chunked = any(k == b"transfer-encoding" for k, _ in headers)
        if (length is None or length.strip() == b"0") and not chunked:
            await self.app(scope, receive, send)  # no body: nothing to check
            return
        path = scope.get("path", "")
        form = any(method in methods and rx.match(path) for methods, rx in self.form_routes)
        credentials = any(k in (b"x-api-key", b"authorization") for k, _ in headers)
        if form or not credentials:
            # a form route parses its own body (FastAPI answers anything else with a 422);
            # without credentials the route's 401 comes first
            await self.app(scope, receive, send)
            return
        if not _is_json(_media_type(headers)):
            refused = self._refuse_unauthorised(scope, receive)
            if refused is not None:
                await problem_response(refused, path)(scope, receive, send)
                return
            problem = ProblemError(
                "send the body as application/json",
                status=415,
                slug="unsupported-media-type",
                title="Unsupported media type",
                accepted=["application/json"],
            )
            await problem_response(problem, path)(scope, receive, send)
            return
        if path.startswith(self.self_checked):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    break
        except PayloadTooLarge as exc:
            await problem_response(exc, path)(scope, receive, send)
            return
        data = bytes(body)
        try:
            json.loads(data, object_pairs_hook=_no_duplicates)
        except DuplicateKey as exc:
            refused = self._refuse_unauthorised(scope, receive)
            problem = refused if refused is not None else duplicate_key_problem(exc.key)
            await problem_response(problem, path)(scope, receive, send)
            return
        except (ValueError, RecursionError):
            pass  # not JSON: the route answers that as it always has
        await self.app(scope, replay_receive(data), send)
