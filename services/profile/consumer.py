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

    def side_loop(topic: str, suffix: str, **options: Any) -> ConsumerLoop:
        """A loop of its own (own group, own decoder) for one side topic of the registry."""
        part = HANDLERS.on_topics(topic)
        return ConsumerLoop(
            name=f"profile-{suffix}",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=f"{s.group_id}-{suffix}",
            topics=list(part.topics),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=part.batch_handler(s),
            session_timeout_ms=s.kafka_session_timeout_ms,
            side=True,
            **options,
        )

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
        side_loop(topics.APIKEY_USAGE, "apikey-usage", decoder=decode_usage),
        side_loop(topics.EXPORT_PARTS, "export-parts", decoder=decode_part),
        side_loop(topics.ERASURES_APPLIED, "erasure-acks"),
    ]
