"""Opaque cursor pagination: the cursor encodes the sort key of the last item returned."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel, Field

from shared.errors import ProblemError

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: the ``limit`` query parameter of a cursor-paginated list
ListLimit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]


class Page(BaseModel, Generic[T]):
    """One page of results; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = Field(None, description="null on the last page")


#: what keys the cursors' signature until :func:`configure_cursor_key` (tests, tools)
_DEFAULT_SECRET = "crm-cursor-development-key"
_key = hashlib.sha256(_DEFAULT_SECRET.encode()).digest()
_MAC_BYTES = 12


def configure_cursor_key(secret: str | None) -> None:
    """Key the cursors' signature with ``secret`` (``build_app`` passes
    ``CRM_CURSOR_SECRET``, or else the admin key: every replica of a service shares it, so
    a cursor from one is good on another and after a restart)."""
    global _key
    material = secret or _DEFAULT_SECRET
    _key = hmac.new(material.encode(), b"crm cursor v1", hashlib.sha256).digest()


def _mac(payload: str) -> str:
    digest = hmac.new(_key, payload.encode(), hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode_cursor(position: dict[str, Any]) -> str:
    """Encode a sort position into an opaque URL-safe cursor, signed so that an edited or
    made-up cursor is refused rather than read as a position."""
    payload = base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")
    return f"{payload}.{_mac(payload)}"


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """Decode a cursor from :func:`encode_cursor`; a malformed or forged one is a 400."""
    if not cursor:
        return None
    payload, _, mac = cursor.rpartition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(payload).encode()):
        raise ProblemError("the cursor is not one this API returned", slug="invalid-cursor")
    try:
        padded = payload + "=" * (-len(payload) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception as exc:
        raise ProblemError(
            "the cursor is not one this API returned", slug="invalid-cursor"
        ) from exc
    if not isinstance(value, dict):
        raise ProblemError("the cursor is not one this API returned", slug="invalid-cursor")
    return value


def page_of(
    items: Sequence[T], key: Callable[[T], str | int], cursor: str | None, limit: int
) -> Page[T]:
    """A page of a short list read whole (operator-made things: segments, tag rules, policy
    versions, distinct tags), ordered by ``key``, which must be unique. The cursor holds the
    last key returned, so a page stays right when items are added or removed meanwhile."""
    position = decode_cursor(cursor)
    ordered = sorted(items, key=key)
    if position is not None:
        after = position.get("after")
        if not isinstance(after, str | int):
            raise ProblemError("the cursor is not one this API returned", slug="invalid-cursor")
        ordered = [item for item in ordered if _after(key(item), after)]
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page[T](
        items=page, next_cursor=encode_cursor({"after": key(page[-1])}) if more else None
    )


def _after(value: str | int, after: str | int) -> bool:
    if isinstance(value, int) and isinstance(after, int):
        return value > after
    return str(value) > str(after)
