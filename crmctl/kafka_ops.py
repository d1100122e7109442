"""What the ``crm`` command reads from and writes to Kafka: consumer lag per group, the
dead-letter topic, and re-driving a dead letter to the topic it came from.

Lag is the high watermark minus the group's committed offset. The high watermark is read from
fetch responses (``KafkaConsumer.highwater``), not from ``end_offsets()``: the embedded broker
can answer ListOffsets(latest) with the base offset of the last batch (PRODUCT.md, broker notes).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from crmctl.client import CrmError
from crmctl.config import Target
from shared import manifest

DEADLETTER_TOPIC = "crm.deadletter.v1"
#: consumer groups a service runs beside its main one (``crm-<service>-<suffix>``)
_FURTHER_GROUPS = {"ingest": ("profiles",)}

#: the consumer groups the services of the manifest run (``<SERVICE>_CONSUMER_GROUP``
#: defaults), each under the target's topic namespace
SERVICE_GROUPS = tuple(
    group
    for name in manifest.NAMES
    for group in (f"crm-{name}", *(f"crm-{name}-{s}" for s in _FURTHER_GROUPS.get(name, ())))
)


def _kafka() -> Any:
    try:
        import kafka
    except ImportError as exc:  # pragma: no cover - kafka-python is a dependency
        raise CrmError("kafka-python is not installed") from exc
    return kafka


@contextmanager
def _reader(target: Target) -> Iterator[Any]:
    kafka = _kafka()
    try:
        consumer = kafka.KafkaConsumer(
            bootstrap_servers=target.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            request_timeout_ms=10000,
            consumer_timeout_ms=1000,
        )
    except kafka.errors.KafkaError as exc:
        raise CrmError(f"broker at {target.bootstrap_servers} unreachable: {exc}") from exc
    try:
        yield consumer
    finally:
        consumer.close()


def _highwaters(consumer: Any, starts: dict[Any, int], timeout: float) -> dict[Any, int]:
    """High watermarks of ``starts``' partitions, learnt by fetching from those offsets."""
    if not starts:
        return {}
    consumer.assign(list(starts))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    marks: dict[Any, int] = {}
    deadline = time.monotonic() + timeout
    while len(marks) < len(starts) and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200, max_records=1)
        for tp in starts:
            mark = consumer.highwater(tp)
            if mark is not None:
                marks[tp] = mark
    return marks


@dataclass
class GroupLag:
    group: str
    topic: str
    partition: int
    committed: int
    highwater: int | None

    @property
    def lag(self) -> int | None:
        return None if self.highwater is None else max(self.highwater - self.committed, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "highwater": self.highwater,
            "lag": self.lag,
        }


def consumer_lag(
    target: Target, groups: Iterable[str] | None = None, timeout: float = 10
) -> list[GroupLag]:
    """Per group and partition of the target's namespace: committed offset, high watermark, lag.
    ``groups`` default to the services' own, under the namespace."""
    if groups is None:
        groups = [target.namespace + group for group in SERVICE_GROUPS]
    kafka = _kafka()
    try:
        admin = kafka.KafkaAdminClient(
            bootstrap_servers=target.bootstrap_servers, request_timeout_ms=10000
        )
    except kafka.errors.KafkaError as exc:
        raise CrmError(f"broker at {target.bootstrap_servers} unreachable: {exc}") from exc
    committed: dict[tuple[str, Any], int] = {}
    try:
        for group in groups:
            try:
                offsets = admin.list_group_offsets({group: None}).get(group, {})
            except kafka.errors.KafkaError:
                continue  # the group never committed (its service has not consumed yet)
            for tp, meta in offsets.items():
                topic = tp.topic
                if meta.offset < 0 or not topic.startswith(target.namespace + "crm."):
                    continue  # nothing committed, or another namespace's topic
                committed[(group, tp)] = meta.offset
    finally:
        admin.close()
    starts: dict[Any, int] = {}
    for (_, tp), offset in committed.items():
        starts[tp] = max(starts.get(tp, offset), offset)
    with _reader(target) as consumer:
        marks = _highwaters(consumer, starts, timeout)
    rows = [
        GroupLag(group, tp.topic, tp.partition, offset, marks.get(tp))
        for (group, tp), offset in committed.items()
    ]
    return sorted(rows, key=lambda r: (r.group, r.topic, r.partition))


@dataclass
class DeadLetterRecord:
    """One record of the dead-letter topic: where it sits, and the ``deadletter.recorded`` event."""

    partition: int
    offset: int
    event: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.event.get("event_id", f"{self.partition}:{self.offset}"))

    @property
    def data(self) -> dict[str, Any]:
        data = self.event.get("data")
        return data if isinstance(data, dict) else {}

    def summary(self) -> dict[str, Any]:
        d = self.data
        return {
            "event_id": self.event_id,
            "position": f"{self.partition}:{self.offset}",
            "origin": f"{d.get('origin_topic')}[{d.get('origin_partition')}]@{d.get('origin_offset')}",
            "consumer_group": d.get("consumer_group"),
            "error_type": d.get("error_type"),
            "error": d.get("error"),
            "attempts": d.get("attempts"),
            "failed_at": d.get("failed_at"),
        }


def read_dead_letters(target: Target, timeout: float = 15) -> list[DeadLetterRecord]:
    """Every record of the dead-letter topic (from the beginning up to the high watermark)."""
    kafka = _kafka()
    topic = target.namespace + DEADLETTER_TOPIC
    with _reader(target) as consumer:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [kafka.TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[DeadLetterRecord] = []
        done: set[Any] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(tps) and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300, max_records=1000)
            for messages in batch.values():
                for message in messages:
                    try:
                        event = json.loads(message.value)
                    except ValueError:
                        event = {"event_id": f"{message.partition}:{message.offset}", "data": {}}
                    records.append(DeadLetterRecord(message.partition, message.offset, event))
            for tp in tps:
                mark = consumer.highwater(tp)
                if mark is not None and consumer.position(tp) >= mark:
                    done.add(tp)
        if len(done) < len(tps):
            raise CrmError(f"could not read {topic} to its end within {timeout:.0f} s")
    return sorted(records, key=lambda r: (r.data.get("failed_at") or "", r.partition, r.offset))


def find_dead_letter(records: list[DeadLetterRecord], wanted: str) -> DeadLetterRecord:
    """By event id (or a unique prefix of it) or by ``partition:offset`` in the topic."""
    exact = [r for r in records if wanted in (r.event_id, f"{r.partition}:{r.offset}")]
    if exact:
        return exact[0]
    prefixed = [r for r in records if r.event_id.startswith(wanted)]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        raise CrmError(f"{wanted!r} matches {len(prefixed)} dead letters; give more of the id")
    raise CrmError(f"no dead letter {wanted!r}")


def original_record(
    target: Target, record: DeadLetterRecord, timeout: float = 15
) -> tuple[str, bytes | None, bytes]:
    """The origin topic, key and value of a dead letter's record, read back from where it
    sits on its origin topic (a dead letter carries neither: they may hold personal data).
    Fails when the topic no longer holds it (past its retention) or holds another record."""
    kafka = _kafka()
    d = record.data
    topic, partition, offset = (
        d.get("origin_topic"),
        d.get("origin_partition"),
        d.get("origin_offset"),
    )
    if not isinstance(topic, str) or not isinstance(partition, int) or not isinstance(offset, int):
        raise CrmError(f"dead letter {record.event_id} names no origin")
    where = f"{topic}[{partition}]@{offset}"
    tp = kafka.TopicPartition(topic, partition)
    with _reader(target) as consumer:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in consumer.poll(timeout_ms=300, max_records=1).get(tp, []):
                if message.offset != offset:  # the record is gone: retention or compaction
                    raise CrmError(f"{where} is no longer on its topic (past its retention?)")
                value = message.value or b""
                wanted = d.get("value_sha256")
                if wanted and hashlib.sha256(value).hexdigest() != wanted:
                    raise CrmError(
                        f"{where} holds another record than dead letter {record.event_id}"
                    )
                return topic, message.key, value
    raise CrmError(f"{where} could not be read within {timeout:.0f} s (past its retention?)")


def redrive(target: Target, records: list[DeadLetterRecord]) -> list[dict[str, Any]]:
    """Write each dead letter's original record back to its origin topic (consumers are
    idempotent, so a record re-driven twice has its effect once)."""
    kafka = _kafka()
    originals = [(r, *original_record(target, r)) for r in records]
    try:
        producer = kafka.KafkaProducer(
            bootstrap_servers=target.bootstrap_servers, acks="all", request_timeout_ms=10000
        )
    except kafka.errors.KafkaError as exc:
        raise CrmError(f"broker at {target.bootstrap_servers} unreachable: {exc}") from exc
    results = []
    try:
        for record, topic, key, value in originals:
            meta = producer.send(topic, key=key, value=value).get(timeout=15)
            results.append(
                {
                    "event_id": record.event_id,
                    "topic": topic,
                    "partition": meta.partition,
                    "offset": meta.offset,
                }
            )
        producer.flush()
    finally:
        producer.close()
    return results
