"""Consumes segments, profiles, orders and receipts into the local projections."""

from __future__ import annotations

from services.campaign.config import Settings
from services.campaign.handlers import HANDLERS, VIEWS, make_batch_handler
from shared.bus import ConsumerLoop, envelope_decoder
from shared.runtime import ServiceRuntime

#: derived from the registry
CONSUMED_TOPICS = HANDLERS.topics


def build_consumers(runtime: ServiceRuntime) -> list[ConsumerLoop]:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return [
        ConsumerLoop(
            name="campaign-projections",
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.group_id,
            topics=list(CONSUMED_TOPICS),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=make_batch_handler(settings),
            decoder=envelope_decoder(VIEWS),
            max_poll_records=settings.max_poll_records,
            session_timeout_ms=settings.kafka_session_timeout_ms,
        )
    ]
