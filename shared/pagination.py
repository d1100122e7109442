"""Opaque cursor pagination: the cursor encodes the sort key of the last item returned."""

from __future__ import annotations

import base64
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field

from shared.errors import ProblemError

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Page(BaseModel, Generic[T]):
    """One page of results; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = Field(None, description="null on the last page")


def encode_cursor(position: dict[str, Any]) -> str:
    """Encode a sort position into an opaque URL-safe cursor."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """Decode a cursor from :func:`encode_cursor`; a malformed one is a 400 problem."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception as exc:
        raise ProblemError(
            "the cursor is not one this API returned", slug="invalid-cursor"
        ) from exc
    if not isinstance(value, dict):
        raise ProblemError("the cursor is not one this API returned", slug="invalid-cursor")
    return value
