"""Managed keys back into a broker that lost them.

Profile's database is the home of the managed keys; the compacted key topic is only how
every service learns them. The embedded broker of ``make run`` keeps nothing on disk, so
after it restarts (or a full stop/start) the topic is empty and every service would answer
``401 unknown`` for keys profile still lists as active. :class:`KeyRepublisher` runs at
start and every ``apikey_republish_check_seconds``: when the key topic holds fewer records
than profile holds keys, or fewer than at the previous check (emptied or recreated), it
queues the current record of every key in the outbox again. Services keep the newest
version of each key, so a record they already hold is ignored: re-publishing is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import cast

from kafka import TopicPartition
from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from services.profile.models import ApiKeyRow
from shared.apikeys import APIKEYS_TOPIC, ApiKeyRecordedEvent, ApiKeyState, ensure_keys_topics
from shared.bus import add_to_outbox
from shared.db import PLATFORM_TABLES
from shared.producer import consumer_without_topic_creation
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

K = cast(Table, ApiKeyRow.__table__)


def key_count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(K)).scalar_one())


def queue_every_key(session: Session) -> int:
    """Queue the current record of every key for the key topic; returns how many."""
    queued = 0
    for raw in session.scalars(select(K.c.record).order_by(K.c.key_id)):
        state = ApiKeyState.model_validate_json(raw)
        add_to_outbox(
            session,
            APIKEYS_TOPIC,
            ApiKeyRecordedEvent(source="profile", key=state.key_id, data=state),
        )
        queued += 1
    return queued


def _pending(session: Session) -> bool:
    outbox = PLATFORM_TABLES.tables["outbox"]
    found = session.execute(select(outbox.c.id).where(outbox.c.topic == APIKEYS_TOPIC).limit(1))
    return found.first() is not None


class KeyRepublisher:
    """Checks that the broker still holds profile's keys and queues them again if not."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        #: records the topic held at the previous check (None: not checked yet)
        self.last_seen: int | None = None
        self.republished = 0

    def topic_records(self) -> int:
        """How many records the key topic has taken in: the sum of its high watermarks.

        Read from fetch responses (``KafkaConsumer.highwater``), not ``end_offsets()``: the
        embedded broker can answer ListOffsets with the base offset of the last record batch
        (PRODUCT.md's broker notes), which undercounts and would queue every key again."""
        settings = self.runtime.settings
        topic = settings.topic_namespace + APIKEYS_TOPIC
        consumer = consumer_without_topic_creation(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            request_timeout_ms=5000,
            max_partition_fetch_bytes=1024,
        )
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                return 0
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + 5.0
            marks: dict[TopicPartition, int] = {}
            while len(marks) < len(tps) and time.monotonic() < deadline:
                consumer.poll(timeout_ms=200, max_records=1)
                for tp in tps:
                    mark = consumer.highwater(tp)
                    if mark is not None:
                        marks[tp] = mark
            if len(marks) < len(tps):
                # no fetch answer for some partition: fall back to ListOffsets
                marks.update(
                    {tp: v for tp, v in consumer.end_offsets(tps).items() if tp not in marks}
                )
            return int(sum(marks.values()))
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def check(self) -> int:
        """Verify the topic; returns how many key records were queued again (0: none needed).
        Raises if the broker is not reachable (the next check tries again)."""
        with self._lock:
            settings = self.runtime.settings
            if not self.runtime.broker_reachable(timeout=0.5):
                raise ConnectionError("the broker is not reachable")
            ensure_keys_topics(
                settings.kafka_bootstrap_servers,
                settings.topic_namespace,
                settings.topic_partitions,
                settings.replication_factor,
            )
            with self.runtime.db.sessions() as session:
                keys = key_count(session)
                pending = _pending(session)
            held = self.topic_records()
            lost = held < keys or (self.last_seen is not None and held < self.last_seen)
            self.last_seen = held
            if not keys or pending or not lost:
                return 0
            with self.runtime.db.unit_of_work() as session:
                queued = queue_every_key(session)
            self.republished += 1
            log.warning(
                "the broker holds %d key records for %d managed keys (emptied or replaced): "
                "%d queued again",
                held,
                keys,
                queued,
            )
            self.runtime.relay.notify()
            return queued
