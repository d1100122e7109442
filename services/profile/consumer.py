"""Consumes customers, orders, interactions and segment changes with the shared loop."""

from __future__ import annotations

from typing import Any

from services.profile.config import Settings
from services.profile.handlers import make_batch_handler
from shared import topics
from shared.bus import ConsumerLoop
from shared.runtime import ServiceRuntime

CONSUMED_TOPICS = (topics.CUSTOMERS, topics.ORDERS, topics.INTERACTIONS, topics.SEGMENTS)

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
            topics=list(CONSUMED_TOPICS),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=make_batch_handler(s),
            session_timeout_ms=s.kafka_session_timeout_ms,
            **TUNING,
        )
    ]
