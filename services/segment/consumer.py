"""Consumes crm.orders.v1 and crm.profiles.v1 with the shared consumer loop, a batch per poll."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.segment.handlers import HANDLERS, VIEWS, make_batch_handler
from shared.bus import ConsumerLoop, envelope_decoder

if TYPE_CHECKING:
    from services.segment.runtime import SegmentRuntime

#: derived from the registry
CONSUMED_TOPICS = HANDLERS.topics


def build_consumers(runtime: SegmentRuntime) -> list[ConsumerLoop]:
    s = runtime.settings
    return [
        ConsumerLoop(
            name="segment",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id,
            topics=list(CONSUMED_TOPICS),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=make_batch_handler(runtime.clock),
            decoder=envelope_decoder(VIEWS),
            session_timeout_ms=s.kafka_session_timeout_ms,
            max_poll_records=s.max_poll_records,
        )
    ]
