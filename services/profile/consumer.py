"""Consumes customers, orders, interactions and segment changes with the shared loop."""

from __future__ import annotations

from typing import Any

from services.profile import apikeys, subject_exports
from services.profile.config import Settings
from services.profile.handlers import make_batch_handler
from shared import topics
from shared.apikeys import APIKEY_USAGE_TOPIC, ApiKeyUsed, decode_usage
from shared.bus import ConsumerLoop, Inbound
from shared.exports import ExportPartRecorded, decode_part
from shared.runtime import ServiceRuntime

EVENT_TOPICS = (topics.CUSTOMERS, topics.ORDERS, topics.INTERACTIONS, topics.SEGMENTS)
CONSUMED_TOPICS = (*EVENT_TOPICS, APIKEY_USAGE_TOPIC, topics.EXPORT_PARTS)

#: Larger poll batches: each batch loads and writes every profile it touches once, so an
#: order and the segment change it causes land in one write more often.
TUNING: dict[str, Any] = {
    "max_poll_records": 5000,
    "consumer_overrides": {"max_partition_fetch_bytes": 4 * 1024 * 1024},
}


def build_consumers(runtime: ServiceRuntime) -> list[ConsumerLoop]:
    s = runtime.settings
    assert isinstance(s, Settings)
    return [
        ConsumerLoop(
            name="profile-events",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id,
            topics=list(EVENT_TOPICS),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=make_batch_handler(s),
            session_timeout_ms=s.kafka_session_timeout_ms,
            **TUNING,
        ),
        ConsumerLoop(
            name="profile-apikey-usage",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=f"{s.group_id}-apikey-usage",
            topics=[APIKEY_USAGE_TOPIC],
            db=runtime.db,
            publisher=runtime.publisher,
            handlers={"apikey.used": _key_used},
            decoder=decode_usage,
            session_timeout_ms=s.kafka_session_timeout_ms,
        ),
        ConsumerLoop(
            name="profile-export-parts",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=f"{s.group_id}-export-parts",
            topics=[topics.EXPORT_PARTS],
            db=runtime.db,
            publisher=runtime.publisher,
            handlers={"export.part_recorded": _export_part},
            decoder=decode_part,
            session_timeout_ms=s.kafka_session_timeout_ms,
        ),
    ]


def _export_part(session: Any, event: ExportPartRecorded, message: Inbound) -> None:
    subject_exports.record_part(session, event)


def _key_used(session: Any, event: ApiKeyUsed, message: Inbound) -> None:
    apikeys.note_used(session, event.data.key_id, event.data.last_used_at)
