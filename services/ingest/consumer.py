"""Consumes the raw topics with the shared consumer loop."""

from __future__ import annotations

from typing import Any

import orjson

from services.ingest.handlers import HANDLERS
from shared import topics
from shared.bus import ConsumerLoop, PoisonMessage
from shared.runtime import ServiceRuntime

RAW_TYPES = {topics.RAW_ORDERS: "raw.order"}


def decode_raw(record: Any) -> tuple[str, str, Any]:
    try:
        value = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PoisonMessage("not a JSON object")
    return RAW_TYPES[record.topic], f"{record.topic}/{record.partition}/{record.offset}", value


def build_consumers(runtime: ServiceRuntime) -> list[ConsumerLoop]:
    s = runtime.settings
    return [
        ConsumerLoop(
            name="ingest-raw",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id,
            topics=list(RAW_TYPES),
            db=runtime.db,
            publisher=runtime.publisher,
            handlers=HANDLERS,
            decoder=decode_raw,
            session_timeout_ms=s.kafka_session_timeout_ms,
        )
    ]
