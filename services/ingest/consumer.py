"""Consumes the raw topics with the shared consumer loop (one transaction per poll batch)."""

from __future__ import annotations

from typing import Any

from services.ingest.handlers import (
    PROFILE_HANDLERS,
    RAW_KINDS,
    Undecodable,
    make_batch_handler,
)
from services.ingest.validation import parse_json
from shared import topics
from shared.bus import ConsumerLoop
from shared.runtime import ServiceRuntime


def decode_raw(record: Any) -> tuple[str, str, Any]:
    """``(raw.<kind>, topic/partition/offset, the JSON object or Undecodable)``; never raises,
    so a bad record is rejected with its reason by the handler, in the same transaction."""
    dedup_id = f"{record.topic}/{record.partition}/{record.offset}"
    event_type = f"raw.{RAW_KINDS[record.topic]}"
    value = record.value
    payload: Any
    if not value:
        payload = Undecodable("record.empty", "the record has no value")
    else:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            payload = Undecodable("record.not_utf8", "the value is not UTF-8 text")
        else:
            try:
                payload = parse_json(value)
            except ValueError:
                payload = Undecodable("record.not_json", "the value is not valid JSON")
            else:
                if not isinstance(payload, dict):
                    payload = Undecodable("record.not_object", "the value is not a JSON object")
    return event_type, dedup_id, payload


def build_consumers(runtime: ServiceRuntime) -> list[ConsumerLoop]:
    s = runtime.settings
    return [
        ConsumerLoop(
            name="ingest-raw",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id,
            topics=list(RAW_KINDS),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=make_batch_handler(
                runtime.extras["rules"], s.topic_namespace, s.group_id
            ),
            decoder=decode_raw,
            session_timeout_ms=s.kafka_session_timeout_ms,
        ),
        ConsumerLoop(
            name="ingest-profiles",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=f"{s.group_id}-profiles",
            topics=[topics.PROFILES],
            db=runtime.db,
            publisher=runtime.publisher,
            handlers=PROFILE_HANDLERS,
            session_timeout_ms=s.kafka_session_timeout_ms,
            # erasures rewrite stored events: do not leave the old pages in the WAL
            after_commit=runtime.db.checkpoint,
        ),
    ]
