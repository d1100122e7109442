"""Getting stored events to Kafka, and back into a broker that lost them.

The embedded broker keeps nothing on disk: after a restart of ``make run`` it is
empty while ingest's event store still holds everything. Ingest therefore writes an
*epoch marker* (a random id, kept in ``kv_state``) to its own one-partition topic
``crm.ingest.epochs.v1`` through the outbox, after the events it covers. The
:class:`EpochGuard` checks at start, every ``epoch_check_interval`` seconds and after
any failed publish that the broker still holds the current marker; if it does not
(and the marker is not still waiting in the outbox), the broker lost our events: it
recreates the topics and resets the published-sequence watermark, so every current
version is published again, then a new marker. Consumers recognise what they already
processed by event id, so the replay is harmless for those that did see it: delivery
stays exactly-once in effect.

The event store is ingest's outbox: :class:`IngestRelay` publishes the current versions
past the watermark (``kv_state.published_sequence``) and then moves it; the platform
outbox table still carries dead letters, ranged replays and the epoch markers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, TopicPartition

from services.ingest.config import Settings
from services.ingest.repository import EventStore
from shared import metrics, topics
from shared.bus import OutboxRelay, add_raw_to_outbox, ensure_topics
from shared.db import get_state, set_state
from shared.runtime import ServiceRuntime

if TYPE_CHECKING:
    from services.ingest.runtime import IngestRuntime

log = logging.getLogger(__name__)

EPOCH_TOPIC = topics.INGEST_EPOCHS
_EPOCH_STATE = "broker_epoch"


class EpochGuard:
    """Detects a broker that lost ingest's events and queues the replay."""

    def __init__(self, runtime: IngestRuntime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self.replays = 0

    def check(self) -> bool:
        """Verify the marker; returns True if a replay was queued. Raises if the broker is down."""
        with self._lock:
            if not self.runtime.broker_reachable(timeout=0.5):
                raise ConnectionError("the broker is not reachable")
            with self.runtime.db.sessions() as session:
                epoch = get_state(session, _EPOCH_STATE)
                marker_pending = EventStore(session).outbox_has(EPOCH_TOPIC)
            if epoch is not None and (marker_pending or self._broker_has(epoch)):
                return False
            return self._replay(first=epoch is None)

    def _broker_has(self, epoch: str) -> bool:
        settings = self.runtime.settings
        topic = settings.topic_namespace + EPOCH_TOPIC
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            request_timeout_ms=5000,
        )
        try:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                return False
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            wanted = epoch.encode()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=300).values():
                    if any(r.value == wanted for r in records):
                        return True
                highwaters = [consumer.highwater(tp) for tp in tps]
                if all(h is not None for h in highwaters) and all(
                    consumer.position(tp) >= h for tp, h in zip(tps, highwaters, strict=True)
                ):
                    return False
            raise TimeoutError("could not read the epoch topic to its end")
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def _replay(self, first: bool) -> bool:
        settings = self.runtime.settings
        ensure_topics(
            settings.kafka_bootstrap_servers,
            self.runtime.topics,
            settings.topic_partitions,
            settings.replication_factor,
            timeout=10,
            namespace=settings.topic_namespace,
        )
        epoch = str(uuid.uuid4())
        with self.runtime.write_lock, self.runtime.db.unit_of_work() as session:
            store = EventStore(session)
            store.lock_for_replay()
            # every current version goes again, in sequence order, once: pending copies
            # queued by a ranged replay are dropped, the published watermark starts over
            store.drop_pending([topics.ORDERS, topics.CUSTOMERS, topics.INTERACTIONS])
            store.reset_published(0)
            queued = store.current_count()
            add_raw_to_outbox(session, [(EPOCH_TOPIC, "epoch", epoch.encode())])
            set_state(session, _EPOCH_STATE, epoch)
        if queued:
            self.replays += 1
            log.warning(
                "the broker does not hold ingest's events (%s); %d events queued again",
                "first start" if first else "it was emptied or replaced",
                queued,
            )
        self.runtime.relay.notify()
        return queued > 0


def make_write_lock(runtime: ServiceRuntime) -> AbstractContextManager[Any]:
    """The lock every ingest writer holds around its transaction.

    SQLite has one writer at a time and makes the others poll with growing sleeps, which
    starves a busy API; queueing on a lock instead (threads, and processes sharing the file)
    keeps writes flowing. PostgreSQL needs none.
    """
    return runtime.db.file_lock(".writelock")


class IngestRelay(OutboxRelay):
    """The outbox relay, made to check the broker's epoch after a failure and at start, and
    to take the write lock only for the moment it deletes what it published."""

    def __init__(self, runtime: IngestRuntime, batch_size: int = 5000) -> None:
        super().__init__(runtime.name, runtime.db, runtime.publisher, batch_size=batch_size)
        self.runtime = runtime
        self.guard: EpochGuard | None = None
        self._verified = False

    def start(self) -> None:
        settings = self.runtime.settings
        if isinstance(settings, Settings) and settings.run_relay:
            super().start()

    def relay_once(self) -> int:
        if not self._verified and self.guard is not None:
            self.guard.check()
            self._verified = True
        try:
            return self._publish_batch()
        except Exception:
            # the broker went away: before publishing again, make sure it still holds our
            # events (OutboxRelay.run gives the next pass a fresh producer)
            self._verified = False
            raise

    def _publish_batch(self) -> int:
        return self._publish_store() + self.publish_outbox()

    def _publish_store(self) -> int:
        """Current versions past the watermark: the event store is ingest's outbox, so an
        accepted record is written once; publishing moves the watermark, deleting nothing."""
        with self.db.sessions() as session:
            store = EventStore(session)
            # PostgreSQL: relays of several replicas take turns on the watermark row
            after = store.published_sequence(for_update=not self.db.is_sqlite)
            rows = store.unpublished(after, self.batch_size)
            if not rows:
                session.rollback()
                return 0
            self.publisher.publish_all((t, k, v) for _, t, k, v in rows)
            with self.runtime.write_lock:
                # compare-and-set: a replay that reset the watermark meanwhile wins
                store.advance_published(after, rows[-1][0])
                session.commit()
        metrics.OUTBOX_PUBLISHED.labels(self.name).inc(len(rows))
        return len(rows)

    def write_guard(self) -> contextlib.AbstractContextManager[object]:
        # ingest's writers queue on one lock (see write_lock); the relay's delete too
        return self.runtime.write_lock

    def pending(self) -> int:
        """Records not yet acknowledged by the broker (store past the watermark + outbox)."""
        with self.db.sessions() as session:
            store = EventStore(session)
            return store.unpublished_count() + store.outbox_count()
