"""The bus's fault classes: what the consumer loop dead-letters and what it retries."""

from __future__ import annotations

from typing import Any

import orjson
from kafka.errors import KafkaError
from sqlalchemy.exc import InterfaceError, OperationalError


class PoisonMessage(Exception):
    """A record that can never be processed (undecodable, invalid): dead-letter it at once."""


class TransientError(Exception):
    """A fault that may pass (broker or database briefly unavailable): retry with backoff."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    OperationalError,
    InterfaceError,
    TimeoutError,
    ConnectionError,
    KafkaError,
)

#: what a broker that went away raises in a client (the producer, the admin client)
BROKER_ERRORS: tuple[type[BaseException], ...] = (KafkaError, ConnectionError, TimeoutError)

#: how much of a rejected record's structure a dead letter keeps (``value_shape``)
SHAPE_MAX_DEPTH = 6
SHAPE_MAX_KEYS = 64
SHAPE_MAX_ITEMS = 8


def value_shape(value: bytes) -> Any:
    """The rejected record's JSON structure with every value replaced by its type (and a
    string's length): what a dead letter shows of the record without its content, which
    may hold personal data (``{"total_amount": "string(12)", "items": ["object", ...]}``).
    Object keys stay (they are field names; a key longer than 40 characters is cut) and
    arrays show their first items; ``None`` when the value is not JSON."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return _shape(parsed, 0)


def _shape(value: Any, depth: int) -> Any:
    if isinstance(value, dict):
        if depth >= SHAPE_MAX_DEPTH:
            return f"object({len(value)} keys)"
        shaped = {
            str(k)[:40]: _shape(v, depth + 1) for k, v in list(value.items())[:SHAPE_MAX_KEYS]
        }
        if len(value) > SHAPE_MAX_KEYS:
            shaped["..."] = f"{len(value) - SHAPE_MAX_KEYS} more keys"
        return shaped
    if isinstance(value, list):
        if depth >= SHAPE_MAX_DEPTH:
            return f"array({len(value)})"
        items = [_shape(v, depth + 1) for v in value[:SHAPE_MAX_ITEMS]]
        if len(value) > SHAPE_MAX_ITEMS:
            items.append(f"{len(value) - SHAPE_MAX_ITEMS} more items")
        return items
    if isinstance(value, str):
        return f"string({len(value)})"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
