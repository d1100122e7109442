"""The Kafka bus: producer, topic creation, transactional outbox relay, and the consumer loop.

Every service uses the same consumer loop (poll -> handle -> commit DB -> commit
offsets). The loop writes a processed-event record in the same transaction as
the handler's effect, so a redelivered record is recognised and skipped;
retries transient faults with backoff; and sends poison records to
``crm.deadletter.v1`` with their origin, the error and the attempt count.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner import DefaultPartitioner, Partitioner, murmur2
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError
from sqlalchemy import MetaData, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from shared import metrics, topics
from shared.db import Database, define_platform_tables
from shared.events import (
    DeadLetter,
    DeadLetterRecorded,
    EnvelopeBase,
    decode_event,
    encode_event,
    utcnow,
)

log = logging.getLogger(__name__)

#: The platform tables every service database has (same definitions as in its metadata).
PLATFORM_TABLES = MetaData()
define_platform_tables(PLATFORM_TABLES)


class PoisonMessage(Exception):
    """A record that can never be processed (undecodable, invalid): dead-letter it at once."""


class TransientError(Exception):
    """A fault that may pass (broker or database briefly unavailable): retry with backoff."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    OperationalError,
    InterfaceError,
    TimeoutError,
    ConnectionError,
    KafkaError,
)


# --------------------------------------------------------------------------- producer


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
    """An idempotent producer (acks=all) tuned for throughput on loopback and in a cluster."""
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
    config.update(overrides)
    return KafkaProducer(**config)


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


# --------------------------------------------------------------------------- outbox


def add_to_outbox(session: Session, topic: str, event: EnvelopeBase) -> None:
    """Queue an event for publication in the caller's transaction (published after commit)."""
    add_raw_to_outbox(session, [(topic, event.key, encode_event(event))])


def add_raw_to_outbox(
    session: Session | Connection,
    rows: Sequence[tuple[str, str | None, bytes]],
    now: datetime | None = None,
) -> None:
    """Queue already-encoded records ``(topic, key, value)`` in the caller's transaction.

    Driver-level ``executemany``: consumers call it once per poll batch on their hot path.
    """
    if not rows:
        return
    connection, mark = driver_connection(session)
    created_at = driver_time(now or utcnow(), mark)
    connection.exec_driver_sql(
        f"INSERT INTO outbox (topic, key, value, created_at) VALUES ({mark}, {mark}, {mark}, {mark})",
        [(t, k, v, created_at) for t, k, v in rows],
    )


def drop_from_outbox(session: Session | Connection, keys: Sequence[str]) -> None:
    """Withdraw unpublished events of these keys (an erasure: they must not go out)."""
    table = PLATFORM_TABLES.tables["outbox"]
    for start in range(0, len(keys), 500):
        session.execute(delete(table).where(table.c.key.in_(list(keys[start : start + 500]))))


def driver_connection(session: Session | Connection) -> tuple[Connection, str]:
    """The connection under ``session`` and its driver's placeholder mark (``?`` or ``%s``)."""
    connection = session.connection() if isinstance(session, Session) else session
    return connection, "?" if connection.dialect.paramstyle == "qmark" else "%s"


def driver_time(moment: datetime, mark: str) -> Any:
    """A timestamp as the driver should receive it: on SQLite (``?``) the text form that
    SQLAlchemy's DateTime type writes and reads; elsewhere the datetime itself."""
    if mark == "?":
        return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


class OutboxRelay:
    """Publishes outbox rows in order and deletes them once the broker acknowledged them."""

    def __init__(
        self,
        name: str,
        db: Database,
        publisher: Publisher,
        batch_size: int = 2000,
        idle_interval: float = 0.2,
    ) -> None:
        self.name = name
        self.db = db
        self.publisher = publisher
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        # checkpoint requests made / served (a counter: a request made during a pass is
        # served after the next one, which sees what was committed before it)
        self._checkpoints_requested = 0
        self._checkpoints_done = 0

    def notify(self) -> None:
        """Wake the relay: something was just committed to the outbox."""
        self._wake.set()

    def checkpoint_when_drained(self) -> None:
        """Checkpoint SQLite's WAL once everything committed so far is published and
        deleted. An erasure's own outbox event must name the customer: without this its
        deleted row would linger in the WAL (and old page copies) until some later
        checkpoint."""
        self._checkpoints_requested += 1
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"{self.name}-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                requested = self._checkpoints_requested
                sent = self.relay_once()
                self.last_error = None
                delay = 0.2
                if sent < self.batch_size and requested > self._checkpoints_done:
                    self._checkpoints_done = requested  # drained past the request
                    self.db.checkpoint()
                if sent < self.batch_size:
                    self._wake.wait(self.idle_interval)
                    self._wake.clear()
            except Exception as exc:
                self.last_error = str(exc)
                log.warning(
                    "outbox relay of %s failed (%s); retrying in %.1fs", self.name, exc, delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        return self.publish_outbox()

    def write_guard(self) -> contextlib.AbstractContextManager[object]:
        """Held while the relay deletes what it published; a service whose writers must
        queue on a lock of their own (ingest on SQLite) returns that lock here."""
        return contextlib.nullcontext()

    def publish_outbox(self) -> int:
        """Publish the oldest outbox rows in order, then delete them; returns how many."""
        table = PLATFORM_TABLES.tables["outbox"]
        with self.db.sessions() as session:
            query = (
                select(table.c.id, table.c.topic, table.c.key, table.c.value)
                .order_by(table.c.id)
                .limit(self.batch_size)
            )
            if not self.db.is_sqlite:
                # several replicas may relay: each row goes to one of them
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            if not rows:
                metrics.OUTBOX_PENDING.labels(self.name).set(0)
                session.rollback()
                return 0
            # a record the producer would refuse (over its 1 MiB request limit) can never be
            # published: retrying it would block every row behind it and resend those before
            # it; it is logged and dropped (nothing in the platform writes one: dead letters
            # are capped, records validated)
            sendable = []
            for row in rows:
                if len(row.value) + len(row.key or "") <= OUTBOX_RECORD_MAX:
                    sendable.append(row)
                else:
                    log.error(
                        "%s: outbox row %s for %s is %d bytes, over the %d a record may have; "
                        "dropped, not published",
                        self.name,
                        row.id,
                        row.topic,
                        len(row.value),
                        OUTBOX_RECORD_MAX,
                    )
            self.publisher.publish_all((r.topic, r.key, r.value) for r in sendable)
            ids = [r.id for r in rows]
            with self.write_guard():
                for start in range(0, len(ids), 500):
                    session.execute(delete(table).where(table.c.id.in_(ids[start : start + 500])))
                session.commit()
        metrics.OUTBOX_PUBLISHED.labels(self.name).inc(len(rows))
        return len(rows)

    def pending(self) -> int:
        from sqlalchemy import func

        with self.db.sessions() as session:
            table = PLATFORM_TABLES.tables["outbox"]
            return int(session.execute(select(func.count()).select_from(table)).scalar_one())


# --------------------------------------------------------------------------- consumer


@dataclass
class Inbound:
    """One consumed record, decoded.

    A handler whose effect erases personal data sets ``checkpoint_after_commit``: once
    the transaction holding the effect commits, the consumer loop checkpoints SQLite's
    write-ahead log into the database file and truncates it (:meth:`Database.checkpoint`),
    so the erased rows' old page copies do not linger in the WAL.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    event_type: str
    dedup_id: str
    event: Any
    attempts: int = 0
    checkpoint_after_commit: bool = False

    @property
    def origin(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


#: the most of a record's value a dead letter carries: a dead letter must stay far below the
#: producer's (and the broker's) 1 MiB message limit, or it would block the outbox behind it
DEADLETTER_VALUE_MAX = 256 * 1024
#: the largest outbox record (key + value) the relay sends: the producer's request limit
#: (max_request_size, 1 MiB) less room for the batch headers
OUTBOX_RECORD_MAX = 1_000_000
#: the most of a record's key (as text) a dead letter carries
DEADLETTER_KEY_MAX = 1024


def dead_letter_event(
    message: Inbound,
    *,
    source: str,
    namespace: str,
    consumer_group: str,
    error: str,
    error_type: str,
    attempts: int,
) -> DeadLetterRecorded:
    """The ``deadletter.recorded`` event for a consumed record: its origin, the reason, and
    the value as text (or base64 when it is not UTF-8) so it can be inspected and replayed."""
    kept = message.value[:DEADLETTER_VALUE_MAX]
    truncated = len(kept) < len(message.value)
    try:
        text_value: str | None = message.value.decode("utf-8")
        if truncated:  # may cut a multi-byte character at the end: drop its head
            text_value = kept.decode("utf-8", errors="ignore")
        b64: str | None = None
    except UnicodeDecodeError:
        text_value, b64 = None, base64.b64encode(kept).decode()
    key = message.key
    # a record key can be as large as a value: the dead letter keeps its head, and is keyed
    # by it only when it is short (the outbox key column holds 500 characters)
    envelope_key = key if key and len(key) <= 200 else f"{message.topic}/{message.partition}"
    return DeadLetterRecorded(
        source=source,
        key=envelope_key,
        data=DeadLetter(
            origin_topic=namespace + message.topic,
            origin_partition=message.partition,
            origin_offset=message.offset,
            key=key[:DEADLETTER_KEY_MAX] if key else key,
            key_truncated=key is not None and len(key) > DEADLETTER_KEY_MAX,
            value=text_value,
            value_base64=b64,
            value_bytes=len(message.value),
            value_truncated=truncated,
            error=error[:2000],
            error_type=error_type,
            attempts=attempts,
            consumer_group=consumer_group,
            failed_at=utcnow(),
        ),
    )


Decoder = Callable[[Any], tuple[str, str, Any]]


def decode_envelope(record: Any) -> tuple[str, str, Any]:
    """Decode an enveloped record: ``(type, dedup id = event id, event)``."""
    try:
        event = decode_event(record.value)
    except ValidationError as exc:
        raise PoisonMessage(f"not a valid event envelope: {_short_validation(exc)}") from exc
    except Exception as exc:
        raise PoisonMessage(f"not a valid event envelope: {exc}") from exc
    return event.type, str(event.event_id), event


def _short_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


class Handler(Protocol):
    def __call__(self, session: Session, event: Any, message: Inbound) -> None: ...


BatchHandler = Callable[[Session, list[Inbound]], None]


@dataclass
class ConsumerLoop:
    """poll -> decode -> handle in one DB transaction -> commit DB -> commit offsets.

    ``handlers`` maps an event type to a plain function ``(session, event, message)``.
    ``batch_handler``, if given, takes the whole poll batch at once (for throughput);
    when a batch fails it falls back to one message at a time so a poison record is
    isolated. Unknown event types are recorded as processed and skipped (forward
    compatibility). When a handler set ``checkpoint_after_commit`` on a message whose
    transaction committed, the poll ends with one :meth:`Database.checkpoint` (before
    ``after_commit``).
    """

    name: str
    bootstrap_servers: str
    group_id: str
    topics: Sequence[str]
    db: Database
    publisher: Publisher
    handlers: dict[str, Handler] = field(default_factory=dict)
    batch_handler: BatchHandler | None = None
    decoder: Decoder = decode_envelope
    max_attempts: int = 5
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    max_poll_records: int = 1000
    poll_timeout_ms: int = 200
    session_timeout_ms: int = 6000
    auto_offset_reset: str = "earliest"
    after_commit: Callable[[], None] | None = None
    namespace: str = ""
    consumer_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self.last_poll_at: float | None = None
        self.processed_count = 0
        self.deadlettered_count = 0
        self._checkpoint_due = False
        #: the service's relay, set by ServiceRuntime: a checkpoint after an erasure asks it
        #: to checkpoint again once the batch's outbox rows are published and deleted
        self.outbox_relay: OutboxRelay | None = None

    # -- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"{self.name}-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _make_consumer(self) -> KafkaConsumer:
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": self.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": self.auto_offset_reset,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": max(self.session_timeout_ms // 6, 500),
            "max_poll_records": self.max_poll_records,
            "max_poll_interval_ms": 600000,
            "fetch_max_wait_ms": 100,
            "metadata_max_age_ms": 10000,
            "client_id": self.name,
        }
        config.update(self.consumer_overrides)
        consumer = KafkaConsumer(**config)
        consumer.subscribe([self.namespace + t for t in self.topics])
        return consumer

    def run(self) -> None:
        """Run until :meth:`stop`; reconnects with backoff when the broker goes away."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._consumer = self._make_consumer()
                delay = 0.5
                while not self._stop.is_set():
                    self.poll_once()
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("consumer %s failed; reconnecting in %.1fs", self.name, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if self._consumer is not None:
                    with contextlib.suppress(Exception):
                        self._consumer.close(autocommit=False)
                    self._consumer = None

    # -- one poll

    def poll_once(self) -> int:
        consumer = self._consumer
        assert consumer is not None
        polled = consumer.poll(timeout_ms=self.poll_timeout_ms)
        self.last_poll_at = time.monotonic()
        if not polled:
            return 0
        started = time.perf_counter()
        messages: list[Inbound] = []
        poison: list[tuple[Inbound, str, str]] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, records in polled.items():
            metrics.CONSUMED.labels(self.name, tp.topic).inc(len(records))
            for record in records:
                message = self._decode(record)
                if isinstance(message, tuple):
                    poison.append(message)
                else:
                    messages.append(message)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        for message, error, error_type in poison:
            self._dead_letter(message, error, error_type, attempts=1)
        if messages:
            self._process(messages)
        if self._checkpoint_due:
            self._checkpoint()
        self._commit_offsets(consumer, offsets)
        self._record_lag(consumer, offsets)
        metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        if self.after_commit is not None:
            self.after_commit()
        return len(messages) + len(poison)

    def _decode(self, record: Any) -> Inbound | tuple[Inbound, str, str]:
        if self.namespace and record.topic.startswith(self.namespace):
            # handlers and decoders see the logical (contract) topic name
            record = record._replace(topic=record.topic[len(self.namespace) :])
        key = _decode_key(record.key)
        value = record.value if record.value is not None else b""
        base = Inbound(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            value=value,
            event_type="",
            dedup_id=f"{record.topic}/{record.partition}/{record.offset}",
            event=None,
        )
        try:
            event_type, dedup_id, event = self.decoder(record)
        except PoisonMessage as exc:
            return base, str(exc), "PoisonMessage"
        except Exception as exc:
            return base, f"cannot decode: {exc}", type(exc).__name__
        base.event_type, base.dedup_id, base.event = event_type, dedup_id, event
        return base

    def _process(self, messages: list[Inbound]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.db.unit_of_work() as session:
                    self._handle_batch(session, messages)
                self._committed(messages)
                return
            except TRANSIENT_ERRORS as exc:
                if attempt >= self.max_attempts:
                    log.warning(
                        "batch of %d failed %d times (%s); one by one", len(messages), attempt, exc
                    )
                    break
                metrics.RETRIES.labels(self.name).inc()
                self._backoff(attempt, exc, messages[0])
            except Exception as exc:
                if len(messages) == 1:
                    self._dead_letter(messages[0], str(exc), type(exc).__name__, attempt)
                    return
                log.info(
                    "batch of %d failed (%s: %s); isolating", len(messages), type(exc).__name__, exc
                )
                break
        for message in messages:
            self._process_one(message)

    def _process_one(self, message: Inbound) -> None:
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            try:
                with self.db.unit_of_work() as session:
                    self._handle_batch(session, [message])
                self._committed([message])
                return
            except TRANSIENT_ERRORS as exc:
                if attempt >= self.max_attempts and self._database_answers():
                    self._dead_letter(message, str(exc), type(exc).__name__, attempt)
                    return
                # the database itself is down: the record is not poison, keep waiting
                metrics.RETRIES.labels(self.name).inc()
                self._backoff(attempt, exc, message)
            except Exception as exc:
                self._dead_letter(message, str(exc), type(exc).__name__, attempt)
                return
        raise TransientError("stopped while retrying")  # offsets stay uncommitted

    def _committed(self, messages: list[Inbound]) -> None:
        if any(m.checkpoint_after_commit for m in messages):
            self._checkpoint_due = True

    def _checkpoint(self) -> None:
        self._checkpoint_due = False
        if self.outbox_relay is not None:
            # what the batch queued (an erasure event naming the customer) goes too
            self.outbox_relay.checkpoint_when_drained()
        try:
            self.db.checkpoint()
        except Exception as exc:
            # the effect is committed either way: a failed checkpoint must not redo the batch
            log.warning("%s: WAL checkpoint after commit failed (%s)", self.name, exc)

    def _handle_batch(self, session: Session, messages: list[Inbound]) -> None:
        # Driver-level SQL: on the hot path SQLAlchemy's statement building cost more
        # than the lookups themselves. The tracking table is the same on every service.
        connection, mark = driver_connection(session)
        ids = list(dict.fromkeys(m.dedup_id for m in messages))
        seen: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            placeholders = ",".join([mark] * len(chunk))
            rows = connection.exec_driver_sql(
                "SELECT event_id FROM processed_events "
                f"WHERE consumer = {mark} AND event_id IN ({placeholders})",
                (self.group_id, *chunk),
            )
            seen.update(row[0] for row in rows)
        fresh: list[Inbound] = []
        for message in messages:
            # a request from an attempt that rolled back does not count
            message.checkpoint_after_commit = False
            if message.dedup_id in seen:
                metrics.DUPLICATES.labels(self.name).inc()
                continue
            seen.add(message.dedup_id)
            fresh.append(message)
        if not fresh:
            return
        if self.batch_handler is not None:
            self.batch_handler(session, fresh)
        else:
            for message in fresh:
                handler = self.handlers.get(message.event_type)
                if handler is None:
                    log.debug(
                        "no handler for %s at %s; skipped", message.event_type, message.origin
                    )
                    continue
                handler(session, message.event, message)
        now = driver_time(utcnow(), mark)
        connection.exec_driver_sql(
            "INSERT INTO processed_events (consumer, event_id, processed_at) "
            f"VALUES ({mark}, {mark}, {mark})",
            [(self.group_id, m.dedup_id, now) for m in fresh],
        )
        per_topic: dict[str, int] = {}
        for message in fresh:
            per_topic[message.topic] = per_topic.get(message.topic, 0) + 1
        for topic, count in per_topic.items():
            metrics.PROCESSED.labels(self.name, topic).inc(count)
        self.processed_count += len(fresh)

    def _database_answers(self) -> bool:
        try:
            self.db.ping()
            return True
        except Exception:
            return False

    def _backoff(self, attempt: int, exc: BaseException, message: Inbound) -> None:
        delay = min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max)
        log.warning(
            "%s: transient fault at %s (attempt %d: %s); retrying in %.2fs",
            self.name,
            message.origin,
            attempt,
            exc,
            delay,
        )
        self._stop.wait(delay)

    def _dead_letter(self, message: Inbound, error: str, error_type: str, attempts: int) -> None:
        """Publish the record to the dead-letter topic; waits for the broker's acknowledgement."""
        event = dead_letter_event(
            message,
            source=self.name,
            namespace=self.namespace,
            consumer_group=self.group_id,
            error=error,
            error_type=error_type,
            attempts=attempts,
        )
        # Log the origin and the reason, never the value: it may hold personal data.
        log.warning("%s: dead-lettered %s (%s)", self.name, message.origin, error_type)
        self.publisher.publish_all([(topics.DEADLETTER, event.key, encode_event(event))])
        metrics.DEADLETTERED.labels(self.name, message.topic).inc()
        self.deadlettered_count += 1

    def _commit_offsets(
        self, consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        try:
            consumer.commit(offsets)
        except Exception as exc:
            # A rebalance took the partitions: the records come again and are recognised.
            log.warning(
                "%s: offset commit failed (%s); records will be redelivered", self.name, exc
            )

    def _record_lag(
        self, consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        for tp, committed in offsets.items():
            # the fetch response's high watermark; end_offsets() is unreliable on Tansu
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                    max(highwater - committed.offset, 0)
                )


def _decode_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(key).decode()
