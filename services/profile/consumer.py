"""Consumes customers, orders, interactions and segment changes with the shared loop."""

from __future__ import annotations

from typing import Any

from services.profile.config import Settings
from services.profile.handlers import HANDLERS, SIDE_TOPICS, make_batch_handler
from shared import topics
from shared.apikeys import decode_usage
from shared.bus import ConsumerLoop
from shared.exports import decode_part
from shared.runtime import ServiceRuntime

#: derived from the registry: the main loop's topics, then those with a loop of their own
EVENT_TOPICS = HANDLERS.without_topics(*SIDE_TOPICS).topics
CONSUMED_TOPICS = HANDLERS.topics

#: Larger poll batches: each batch loads and writes every profile it touches once, so an
#: order and the segment change it causes land in one write more often.
TUNING: dict[str, Any] = {
    "max_poll_records": 5000,
    "consumer_overrides": {"max_partition_fetch_bytes": 4 * 1024 * 1024},
}


def build_consumers(runtime: ServiceRuntime) -> list[ConsumerLoop]:
    s = runtime.settings
    assert isinstance(s, Settings)
    usage = HANDLERS.on_topics(topics.APIKEY_USAGE)
    parts = HANDLERS.on_topics(topics.EXPORT_PARTS)
    acks = HANDLERS.on_topics(topics.ERASURES_APPLIED)
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
            topics=list(usage.topics),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=usage.batch_handler(s),
            decoder=decode_usage,
            session_timeout_ms=s.kafka_session_timeout_ms,
        ),
        ConsumerLoop(
            name="profile-export-parts",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=f"{s.group_id}-export-parts",
            topics=list(parts.topics),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=parts.batch_handler(s),
            decoder=decode_part,
            session_timeout_ms=s.kafka_session_timeout_ms,
        ),
        ConsumerLoop(
            name="profile-erasure-acks",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=f"{s.group_id}-erasure-acks",
            topics=list(acks.topics),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=acks.batch_handler(s),
            session_timeout_ms=s.kafka_session_timeout_ms,
        ),
    ]
