"""Consumes crm.orders.v1 and crm.profiles.v1 with the shared consumer loop, a batch per poll."""

from __future__ import annotations

import gc

from services.segment.config import Settings
from services.segment.handlers import make_batch_handler
from shared import topics
from shared.bus import ConsumerLoop
from shared.runtime import ServiceRuntime

CONSUMED_TOPICS = (topics.ORDERS, topics.PROFILES)


#: gen0 / gen1 / gen2 collection thresholds while the consumer runs (CPython: 700 / 10 / 10)
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Make the cyclic garbage collector run less often (process-wide, never more often).

    Decoding and applying a poll batch allocates ~100 short-lived objects per event;
    with CPython's default thresholds a full collection, which walks every object the
    process holds, runs about once per thousand events and took ~30 % of the consumer's
    CPU time (bench/bench_segment.py). Reference counting frees almost all of those
    objects anyway; the thresholds only delay the collection of cycles.
    """
    current = gc.get_threshold()
    if current[0] == 0:  # the collector is switched off: leave it so
        return
    gc.set_threshold(*(max(a, b) for a, b in zip(current, GC_THRESHOLDS, strict=True)))


def build_consumers(runtime: ServiceRuntime) -> list[ConsumerLoop]:
    s = runtime.settings
    assert isinstance(s, Settings)
    tune_gc()
    return [
        ConsumerLoop(
            name="segment",
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id,
            topics=list(CONSUMED_TOPICS),
            db=runtime.db,
            publisher=runtime.publisher,
            batch_handler=make_batch_handler(runtime.extras["clock"]),
            session_timeout_ms=s.kafka_session_timeout_ms,
            max_poll_records=s.max_poll_records,
        )
    ]
