"""The consuming side of the bus: :class:`ConsumerLoop` (poll -> handle -> commit DB ->
commit offsets), the decoded record :class:`Inbound`, and dead letters.

The loop writes a processed-event record in the same transaction as the handler's
effect, so a redelivered record is recognised and skipped; retries transient faults
with backoff; and sends poison records to ``crm.deadletter.v1`` with their origin,
the error and the attempt count.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError
from sqlalchemy.orm import Session

from shared import metrics, topics
from shared.broker_state import BrokerState
from shared.bus_errors import (
    BROKER_ERRORS,
    TRANSIENT_ERRORS,
    PoisonMessage,
    TransientError,
    value_shape,
)
from shared.consumer_health import DEFAULT_STALL_SECONDS, ProgressWatch, rebuild_delay
from shared.db import PLATFORM_TABLES, Database, executemany, insert_sql, select_in
from shared.event_views import view_decoder
from shared.events import (
    DeadLetter,
    DeadLetterRecordedEvent,
    EnvelopeBase,
    decode_event,
    encode_event,
    utcnow,
)
from shared.logs import log_context
from shared.outbox import OutboxRelay
from shared.producer import Publisher

log = logging.getLogger(__name__)

_PROCESSED = PLATFORM_TABLES.tables["processed_events"]
_SEEN = "SELECT event_id FROM processed_events WHERE consumer = {mark} AND event_id IN ({marks})"
_TRACK_COLUMNS = ("consumer", "event_id", "processed_at")
_TRACK = insert_sql(_PROCESSED, _TRACK_COLUMNS)


class ConsumerStalled(Exception):
    """The group member made no progress for longer than its bound: replace it."""


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


def dead_letter_event(
    message: Inbound,
    *,
    source: str,
    namespace: str,
    consumer_group: str,
    error: str,
    error_type: str,
    attempts: int,
) -> DeadLetterRecordedEvent:
    """The ``deadletter.recorded`` event for a consumed record: its origin, the reason, and
    the key's and value's SHA-256 and size, never the key or value (they may hold personal
    data; the original stays on its topic until retention). Keyed by the origin partition."""
    key = message.key
    return DeadLetterRecordedEvent(
        source=source,
        key=f"{message.topic}/{message.partition}",
        data=DeadLetter(
            origin_topic=namespace + message.topic,
            origin_partition=message.partition,
            origin_offset=message.offset,
            key_sha256=None if key is None else hashlib.sha256(key.encode()).hexdigest(),
            value_bytes=len(message.value),
            value_sha256=hashlib.sha256(message.value).hexdigest(),
            value_shape=value_shape(message.value),
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
    return _decode_with(decode_event, record)


def envelope_decoder(views: Sequence[type[EnvelopeBase]]) -> Decoder:
    """:func:`decode_envelope` with the event types of ``views`` decoded as those leaner
    views (``shared.event_views.view_decoder``): what fails to decode is poison all the same."""
    decode = view_decoder(views)
    return lambda record: _decode_with(decode, record)


def _decode_with(decode: Callable[[bytes], Any], record: Any) -> tuple[str, str, Any]:
    try:
        event = decode(record.value)
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


#: what the loop hands each poll batch's fresh messages to (built from a service's registry:
#: :meth:`shared.registry.Registry.batch_handler`)
BatchHandler = Callable[[Session, list[Inbound]], None]


@dataclass
class ConsumerLoop:
    """poll -> decode -> handle in one DB transaction -> commit DB -> commit offsets.

    ``batch_handler`` takes the poll batch's fresh messages at once (for throughput): a
    service builds it from its handler registry (:mod:`shared.registry`), which skips the
    types it does not know (forward compatibility; the loop records them as processed).
    When a batch fails the loop falls back to one message at a time so a poison record is
    isolated. When a handler set ``checkpoint_after_commit`` on a message whose
    transaction committed, the poll ends with one :meth:`Database.checkpoint` (before
    ``after_commit``).
    """

    name: str
    bootstrap_servers: str
    group_id: str
    topics: Sequence[str]
    db: Database
    publisher: Publisher
    batch_handler: BatchHandler
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
    #: seconds without an assignment, or without progress while behind, before the member
    #: is declared stalled and replaced (:mod:`shared.consumer_health`)
    stall_after: float = DEFAULT_STALL_SECONDS
    #: also the rebalance timeout (how long the coordinator waits for members to rejoin)
    max_poll_interval_ms: int = 600_000
    #: under load (``gather_above`` records/s or more over the last half second), a poll
    #: that brought fewer than a tenth of ``max_poll_records`` waits this long for more
    #: before it is handled: each batch costs a transaction, a dedup read and an offset
    #: commit whatever its size, and one order per request otherwise arrives in batches of
    #: a few records. 0: never. A quiet consumer handles its records at once, so a lone
    #: order is not delayed (``CRM_CONSUMER_GATHER_MS``).
    gather_ms: int = 0
    gather_above: float = 200.0
    #: off the order path (API key usage, exports, erasure receipts, ...): the service
    #: runtime gives it ``side_consumer_tuning`` (its fetches wait longer: fewer idle round
    #: trips) instead of ``consumer_tuning``
    side: bool = False

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
        #: why the current member is stalled (``None`` while healthy); kept until a fresh
        #: member has partitions again
        self.stall_reason: str | None = None
        #: how many times a stalled member was replaced by a fresh one
        self.rebuilds = 0
        self._next_offsets: dict[TopicPartition, int] = {}
        #: the service's view of the broker (set by ServiceRuntime)
        self.broker_state: BrokerState | None = None
        #: whether the consumer is under load (then a small poll gathers: ``gather_ms``),
        #: from the records of the current rate window
        self._busy = False
        self._clock = time.monotonic
        self._window_start = self._clock()
        self._window_records = 0

    # lifecycle

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
            "max_poll_interval_ms": self.max_poll_interval_ms,
            "fetch_max_wait_ms": 100,
            "metadata_max_age_ms": 10000,
            "client_id": self.name,
        }
        config.update(self.consumer_overrides)
        consumer = KafkaConsumer(**config)
        # By pattern, not by name: a subscription by name asks the broker for those topics'
        # metadata, and the embedded broker then auto-creates a missing one with its own 4
        # partitions (it ignores allow_auto_create_topics=False). After a broker restart our
        # consumers reconnected first and created crm.profiles.v1 so; a pattern subscription
        # asks for all topics, creates none, and picks the topic up once its owner made it.
        names = [re.escape(self.namespace + t) for t in self.topics]
        consumer.subscribe(pattern=f"^({'|'.join(names)})$")
        return consumer

    def health(self) -> str:
        """``ok``, ``starting``, or ``stalled: <reason>`` (what ``/readyz`` shows)."""
        if self.stall_reason is not None:
            return f"stalled: {self.stall_reason}"
        if not self.running or self.last_poll_at is None:
            return "starting"
        silent = time.monotonic() - self.last_poll_at
        if silent > self.stall_after:
            return f"stalled: poll has not returned for {silent:.0f}s"
        return "ok"

    def run(self) -> None:
        """Run until :meth:`stop`; reconnects with backoff when the broker goes away, and
        replaces a stalled member with a fresh one (backoff 1, 2, 4 ... 60 s)."""
        delay = 0.5
        stalls = 0
        while not self._stop.is_set():
            try:
                self._consumer = self._make_consumer()
                self._next_offsets = {}
                watch = ProgressWatch(self.stall_after)
                delay = 0.5
                while not self._stop.is_set():
                    records = self.poll_once()
                    assignment = self._assignment_view(self._consumer)
                    reason = watch.observe(assignment, records)
                    if reason is not None:
                        raise ConsumerStalled(reason)
                    if assignment:
                        stalls = 0
                        self._recovered()
            except ConsumerStalled as exc:
                stalls += 1
                self._stalled(str(exc), stalls)
            except Exception as exc:
                if self._stop.is_set():
                    break
                if self.broker_state is not None and isinstance(exc, BROKER_ERRORS):
                    # logged by the state once per outage, not once per reconnect
                    self.broker_state.unreachable(f"consumer {self.name}", exc)
                    log.debug("consumer %s: %s; reconnecting in %.1fs", self.name, exc, delay)
                else:
                    log.exception("consumer %s failed; reconnecting in %.1fs", self.name, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if self._consumer is not None:
                    with contextlib.suppress(Exception):
                        self._consumer.close(autocommit=False)
                    self._consumer = None

    def _stalled(self, reason: str, stalls: int) -> None:
        wait = rebuild_delay(stalls)
        # logged and counted before ``stall_reason`` is set: whoever sees the reason (the
        # health check, a test) also finds the log line and the metrics
        log.warning(
            "consumer %s (group %s) stalled: %s; replacing it with a fresh member in %.0fs",
            self.name,
            self.group_id,
            reason,
            wait,
        )
        self.rebuilds += 1
        metrics.CONSUMER_STALLED.labels(self.name).set(1)
        metrics.CONSUMER_REBUILDS.labels(self.name).inc()
        self.stall_reason = reason
        if self._consumer is not None:
            # leave the group now, so the fresh member does not wait for this one's session
            with contextlib.suppress(Exception):
                self._consumer.close(autocommit=False)
            self._consumer = None
        self._stop.wait(wait)

    def _recovered(self) -> None:
        if self.stall_reason is not None:
            log.warning("consumer %s recovered: partitions assigned again", self.name)
            self.stall_reason = None
            metrics.CONSUMER_STALLED.labels(self.name).set(0)

    def _assignment_view(
        self, consumer: KafkaConsumer | None
    ) -> dict[TopicPartition, tuple[int | None, int | None]]:
        """Each assigned partition with (next offset to consume, broker's high watermark)."""
        if consumer is None:
            return {}
        view: dict[TopicPartition, tuple[int | None, int | None]] = {}
        for tp in consumer.assignment() or ():
            position = self._next_offsets.get(tp)
            if position is None:
                # kafka-python's public position() may block on the coordinator; the
                # subscription state holds the same number when it is known
                with contextlib.suppress(Exception):
                    state = consumer._subscription.assignment[tp]
                    position = state.position.offset if state.position is not None else None
            view[tp] = (position, consumer.highwater(tp))
        return view

    # one poll

    def poll_once(self) -> int:
        consumer = self._consumer
        assert consumer is not None
        polled = consumer.poll(timeout_ms=self.poll_timeout_ms)
        self.last_poll_at = time.monotonic()
        count = sum(len(records) for records in polled.values()) if polled else 0
        self._note_rate(count)
        if not polled:
            self._record_idle_lag(consumer)
            return 0
        if self._busy and self.gather_ms:
            polled = self._gather(consumer, polled, count)
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
            self._next_offsets[tp] = records[-1].offset + 1
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

    def _note_rate(self, count: int) -> None:
        """Count a poll's records; every half second, whether the rate says under load."""
        self._window_records += count
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed >= 0.5:
            self._busy = self._window_records / elapsed >= self.gather_above
            self._window_start, self._window_records = now, 0

    def _gather(
        self, consumer: KafkaConsumer, polled: dict[Any, list[Any]], count: int
    ) -> dict[Any, list[Any]]:
        """A small poll (``count`` records) under load, with what arrives within
        ``gather_ms`` (in order)."""
        if count >= max(self.max_poll_records // 10, 1) or self._stop.wait(self.gather_ms / 1000):
            return polled
        more = consumer.poll(timeout_ms=0, max_records=self.max_poll_records - count)
        for tp, records in more.items():
            polled[tp] = [*polled.get(tp, ()), *records]
        return polled

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
        with log_context(batch=f"{messages[0].origin} +{len(messages) - 1}"):
            self._process_batch(messages)

    def _process_batch(self, messages: list[Inbound]) -> None:
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
        with log_context(event_id=message.dedup_id or None, record=message.origin):
            self._process_one_record(message)

    def _process_one_record(self, message: Inbound) -> None:
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            # past max_attempts, whether the database answered before this attempt: a record
            # is dead-lettered only for a transient fault while the database answered before
            # and after it (asked only after the failure, a database that came back while
            # the attempt failed looked like a poison record: the outage fault test saw it)
            answered_before = attempt >= self.max_attempts and self._database_answers()
            try:
                with self.db.unit_of_work() as session:
                    self._handle_batch(session, [message])
                self._committed([message])
                return
            except TRANSIENT_ERRORS as exc:
                if answered_before and self._database_answers():
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
        ids = list(dict.fromkeys(m.dedup_id for m in messages))
        seen = {row[0] for row in select_in(session, _SEEN, ids, before=(self.group_id,), size=500)}
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
        self.batch_handler(session, fresh)
        now = utcnow()
        executemany(
            session,
            _PROCESSED,
            _TRACK,
            _TRACK_COLUMNS,
            [(self.group_id, m.dedup_id, now) for m in fresh],
            repeated=("processed_at",),
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

    def _record_idle_lag(self, consumer: KafkaConsumer) -> None:
        """After an empty poll: each assigned partition's lag (0 when caught up), so the
        gauges exist from the first poll after a start, not only after the first batch."""
        for tp, (position, highwater) in self._assignment_view(consumer).items():
            if position is not None and highwater is not None:
                metrics.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                    max(highwater - position, 0)
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
