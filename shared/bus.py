"""The Kafka bus, one import for its parts (kept so existing imports keep working).

- :mod:`shared.producer`: the key-hash partitioner, the idempotent producer,
  :class:`Publisher`, :func:`ensure_topics`;
- :mod:`shared.outbox`: the transactional outbox and its :class:`OutboxRelay`;
- :mod:`shared.consumer_loop`: :class:`ConsumerLoop`, :class:`Inbound`, dead letters;
- :mod:`shared.consumer_health`: how a consumer that stopped making progress is
  detected and replaced;
- :mod:`shared.bus_errors`: poison versus transient faults.
"""

from __future__ import annotations

from shared.bus_errors import TRANSIENT_ERRORS, PoisonMessage, TransientError
from shared.consumer_loop import (
    BatchHandler,
    ConsumerLoop,
    Decoder,
    Inbound,
    dead_letter_event,
    decode_envelope,
    envelope_decoder,
)
from shared.db import PLATFORM_TABLES, driver_connection, driver_time
from shared.outbox import (
    OUTBOX_RECORD_MAX,
    OutboxRelay,
    add_raw_to_outbox,
    add_to_outbox,
    drop_from_outbox,
)
from shared.producer import KeyHashPartitioner, Publisher, ensure_topics, make_producer

__all__ = [
    "OUTBOX_RECORD_MAX",
    "PLATFORM_TABLES",
    "TRANSIENT_ERRORS",
    "BatchHandler",
    "ConsumerLoop",
    "Decoder",
    "Inbound",
    "KeyHashPartitioner",
    "OutboxRelay",
    "PoisonMessage",
    "Publisher",
    "TransientError",
    "add_raw_to_outbox",
    "add_to_outbox",
    "dead_letter_event",
    "decode_envelope",
    "driver_connection",
    "driver_time",
    "drop_from_outbox",
    "ensure_topics",
    "envelope_decoder",
    "make_producer",
]
