"""What every request body must hold, whichever service receives it.

Ingest applies its own, richer rules to the records it accepts; the other services take
request bodies through pydantic models that derive from :class:`RequestModel`, so text
that cannot be stored or published unchanged (a NUL byte: PostgreSQL refuses it; a lone
surrogate: not Unicode, no UTF-8 encoding) is a 422 naming the field, never a 500 or a
poisoned consumer downstream.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator
from pydantic_core import PydanticCustomError

#: the longest string any request body may hold where its field sets no shorter limit
MAX_TEXT = 10_000


def text_problem(value: str) -> tuple[str, str] | None:
    """``(code, message)`` if ``value`` is not storable text, else None."""
    if "\x00" in value:
        return "text.nul", "contains a NUL byte"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text.surrogate", "contains a lone surrogate (not Unicode text)"
    if len(value) > MAX_TEXT:
        return "text.too_long", f"is longer than {MAX_TEXT} characters"
    return None


def _first_problem(value: Any, path: tuple[str | int, ...]) -> tuple[str, str, str] | None:
    if isinstance(value, str):
        problem = text_problem(value)
        return (_dotted(path), *problem) if problem else None
    if isinstance(value, BaseModel):
        items: Any = ((name, getattr(value, name)) for name in type(value).model_fields)
    elif isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and (problem := text_problem(key)):
                return (_dotted((*path, key)), *problem)
        items = value.items()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _first_problem(item, (*path, key))
        if found is not None:
            return found
    return None


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class RequestModel(BaseModel):
    """Base of request bodies: every string in them, at any depth (keys too), is Unicode
    text without NUL bytes and at most :data:`MAX_TEXT` characters."""

    @model_validator(mode="after")
    def _storable_text(self) -> Any:
        found = _first_problem(self, ())
        if found is not None:
            field, code, message = found
            raise PydanticCustomError(
                code, "{field} {message}", {"field": field, "message": message}
            )
        return self
