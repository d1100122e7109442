"""Consumes the raw topics with the shared consumer loop (one transaction per poll batch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.ingest.handlers import HANDLERS, RAW_CONSUMER, RAW_HANDLERS, RAW_KINDS, RawIntake
from services.ingest.validation import Reason, RecordRejected, parse_json
from shared.bus import ConsumerLoop

if TYPE_CHECKING:
    from services.ingest.runtime import IngestRuntime
from shared.strict_input import first_duplicate_key

#: derived from the registries: the raw topics, then the envelope events' topics
CONSUMED_TOPICS = (*RAW_HANDLERS.topics, *HANDLERS.topics)


def decode_raw(record: Any) -> tuple[str, str, Any]:
    """``(raw.<kind>, dedup id, the JSON object or RecordRejected)``; never raises, so a bad
    record is rejected with its reason by the handler, in the same transaction.

    Raw records carry no id of their own: the dedup id is their position and broker
    timestamp, ``topic/partition/offset@timestamp``. A redelivered record has both; a
    topic that starts over (an emptied embedded broker, a recreated topic) reuses offsets
    from 0, and with the position alone its new records would be skipped as seen."""
    dedup_id = f"{record.topic}/{record.partition}/{record.offset}@{record.timestamp}"
    event_type = f"raw.{RAW_KINDS[record.topic]}"
    return event_type, dedup_id, _payload(record.value)


def _payload(value: bytes | None) -> Any:
    if not value:
        return _rejected("record.empty", "the record has no value")
    try:
        payload = parse_json(value)
    except UnicodeDecodeError:  # raised only for what orjson refused: valid JSON is decoded once
        return _rejected("record.not_utf8", "the value is not UTF-8 text")
    except ValueError:
        return _rejected("record.not_json", "the value is not valid JSON")
    if not isinstance(payload, dict):
        return _rejected("record.not_object", "the value is not a JSON object")
    if first_duplicate_key(value, payload) is not None:
        return _rejected("json.duplicate_key", "an object holds the same key twice")
    return payload


def _rejected(code: str, message: str) -> RecordRejected:
    return RecordRejected([Reason("", code, message)])


def build_consumers(runtime: IngestRuntime) -> list[ConsumerLoop]:
    s = runtime.settings
    return [
        ConsumerLoop(
            name=RAW_CONSUMER,
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id,
            topics=list(RAW_HANDLERS.topics),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=RAW_HANDLERS.batch_handler(
                RawIntake(runtime.rules, s.topic_namespace, s.group_id)
            ),
            decoder=decode_raw,
            session_timeout_ms=s.kafka_session_timeout_ms,
        ),
        ConsumerLoop(
            name="ingest-profiles",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=f"{s.group_id}-profiles",
            topics=list(HANDLERS.topics),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=HANDLERS.batch_handler(None),
            session_timeout_ms=s.kafka_session_timeout_ms,
            side=True,
        ),
    ]
