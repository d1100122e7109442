"""The producing side of the bus: the key-hash partitioner, the idempotent producer,
:class:`Publisher`, and topic creation."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner import DefaultPartitioner, Partitioner, murmur2

from shared.bus_errors import TransientError
from shared.events import EnvelopeBase, encode_event

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


class KeyHashPartitioner(Partitioner):
    """Kafka's default assignment, as the Java client makes it (murmur2 of the key modulo
    the partition count), so a customer's records land on one partition whichever client
    writes them; with each key's hash remembered. Customer ids repeat and kafka-python's
    murmur2 is pure Python: with the default partitioner's per-record sorting it took ~13 %
    of ingest's relay CPU (bench_ingest, py-spy). Records without a key: as the default."""

    def __init__(self) -> None:
        self._default = DefaultPartitioner()

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic) if serialized_key is not None else None
        if not partitions:  # no key, or the topic is unknown (the default raises for that)
            return int(
                self._default.partition(
                    topic, key, serialized_key, value, serialized_value, cluster
                )
            )
        ordered = sorted(partitions)
        return int(ordered[_key_hash(serialized_key) % len(ordered)])


def make_producer(bootstrap_servers: str, **overrides: Any) -> KafkaProducer:
    """An idempotent producer (acks=all) tuned for throughput on loopback and in a cluster;
    ``auto_create_topics=False`` keeps it from having topics created by asking for them."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "partitioner": KeyHashPartitioner(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": "lz4",
        "max_in_flight_requests_per_connection": 5,
        "request_timeout_ms": 15000,
        "max_block_ms": 10000,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 60000,
    }
    create_topics = overrides.pop("auto_create_topics", True)
    config.update(overrides)
    producer = KafkaProducer(**config)
    if not create_topics:
        # Ask the broker for all topics' metadata, never for a named one: the embedded broker
        # auto-creates a named topic it lacks with 4 partitions, ignoring the client's
        # allow_auto_create_topics=False. A send to a missing topic then waits max_block_ms
        # and fails, and the caller (the outbox relay) creates the topic with the configured
        # partitions first (shared.topic_keeper). kafka-python has no public switch for this.
        producer._metadata.need_all_topic_metadata = True
    return producer


def consumer_without_topic_creation(**config: Any) -> KafkaConsumer:
    """A consumer that never has a topic created by asking for it (the embedded broker
    auto-creates a named topic it lacks, with 4 partitions, whatever the client asks): its
    metadata requests name no topic, as ``make_producer``'s do. For the readers that name a
    topic outside the topic keeper's care (the API key topics: after a broker restart the key
    feed asked for ``crm.apikeys.v1`` before ``make run`` re-created it with its layout)."""
    consumer = KafkaConsumer(**config)
    consumer._manager.cluster.need_all_topic_metadata = True
    return consumer


class Publisher:
    """Sends records keyed by customer id and checks every send's future."""

    def __init__(self, bootstrap_servers: str, namespace: str = "", **overrides: Any) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.namespace = namespace
        self._overrides = overrides
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    @property
    def producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = make_producer(self.bootstrap_servers, **self._overrides)
            return self._producer

    def send(self, topic: str, key: str | None, value: bytes) -> Any:
        """Queue one record; returns the send future (check it with ``.get()``)."""
        return self.producer.send(
            self.namespace + topic, key=key.encode() if key else None, value=value
        )

    def send_event(self, topic: str, event: EnvelopeBase) -> Any:
        return self.send(topic, event.key, encode_event(event))

    def publish_all(
        self, records: Iterable[tuple[str, str | None, bytes]], timeout: float = 30.0
    ) -> int:
        """Send records and wait until the broker acknowledged every one (raises if not)."""
        futures = [self.send(t, k, v) for t, k, v in records]
        if futures:
            self.producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
        return len(futures)

    def connected(self) -> bool:
        try:
            return bool(self.producer.bootstrap_connected())
        except Exception:
            return False

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._producer is not None:
                try:
                    self._producer.close(timeout=timeout)
                except Exception:  # closing must never raise during shutdown
                    log.exception("producer close failed")
                self._producer = None


def ensure_topics(
    bootstrap_servers: str,
    names: Sequence[str],
    partitions: int = 3,
    replication_factor: int = 1,
    timeout: float = 60.0,
    namespace: str = "",
    stop: threading.Event | None = None,
) -> None:
    """Create the topics that do not exist yet; retries until the broker answers.

    ``namespace`` prefixes every name (tests use it for fresh topics per test).
    """
    names = [namespace + n for n in names]
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        admin = None
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000)
            existing = set(admin.list_topics())
            missing = [n for n in dict.fromkeys(names) if n not in existing]
            for name in missing:
                try:
                    admin.create_topics(
                        [NewTopic(name, partitions, replication_factor)], timeout_ms=10000
                    )
                    log.info("created topic %s (%d partitions)", name, partitions)
                except TopicAlreadyExistsError:
                    pass
            return
        except Exception as exc:
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                raise TransientError(f"cannot create topics on {bootstrap_servers}: {exc}") from exc
            log.warning("broker %s not ready (%s); retrying", bootstrap_servers, exc)
            (stop or threading.Event()).wait(delay)
            delay = min(delay * 2, 3.0)
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    admin.close()
