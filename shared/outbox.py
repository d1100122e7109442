"""The transactional outbox: rows queued in the caller's transaction, and the relay that
publishes them in order and deletes them once the broker acknowledged them."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared import metrics
from shared.broker_state import BrokerState
from shared.bus_errors import BROKER_ERRORS
from shared.db import PLATFORM_TABLES, Database, chunks, executemany_columns, insert_sql
from shared.events import EnvelopeBase, encode_event, utcnow
from shared.producer import Publisher

log = logging.getLogger(__name__)

OUTBOX = PLATFORM_TABLES.tables["outbox"]
_COLUMNS = ("topic", "key", "value", "created_at")
_INSERT = insert_sql(OUTBOX, _COLUMNS)

#: the largest outbox record (key + value) the relay sends: the producer's request limit
#: (max_request_size, 1 MiB) less room for the batch headers
OUTBOX_RECORD_MAX = 1_000_000


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
    created_at = now or utcnow()
    # by column: a full rescoring queues ~170,000 records at once (~0.3 s of CPU as rows)
    names, keys, values = zip(*rows, strict=True)
    executemany_columns(
        session,
        OUTBOX,
        _INSERT,
        _COLUMNS,
        [names, keys, values, [created_at] * len(rows)],
        repeated=("created_at",),
    )


def drop_from_outbox(session: Session | Connection, keys: Sequence[str]) -> None:
    """Withdraw unpublished events of these keys (an erasure: they must not go out)."""
    for chunk in chunks(keys, 500):
        session.execute(delete(OUTBOX).where(OUTBOX.c.key.in_(list(chunk))))


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
        #: held for a whole pass (read, publish, delete): on SQLite, two processes sharing a
        #: database (the API and the consumers, ``CRM_RUN_LAYOUT=api-apart``) each run a
        #: relay, and without it both would publish the same rows (PostgreSQL: SKIP LOCKED)
        self._pass_lock = db.file_lock(".relaylock")
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        #: when the current run of failed passes began (monotonic), None while healthy
        self._failing_since: float | None = None
        # checkpoint requests made / served (a counter: a request made during a pass is
        # served after the next one, which sees what was committed before it)
        self._checkpoints_requested = 0
        self._checkpoints_done = 0
        #: the service's view of the broker (set by ServiceRuntime): failures are logged
        #: once per outage, and ``ensure_topics`` runs before the first publish after one
        self.broker_state: BrokerState | None = None
        #: creates the service's missing topics with the configured partitions (raises
        #: while the broker is down); run before publishing whenever the broker was not
        #: known to be up, so a broker that restarted empty gets them before any record
        self.ensure_topics: Callable[[], object] | None = None

    def failing_for(self) -> float:
        """Seconds since the relay last published or found nothing to publish, while its
        passes fail (0 while healthy): ``/readyz`` reports it, with ``last_error``."""
        since = self._failing_since
        return 0.0 if since is None else max(time.monotonic() - since, 1e-3)

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
                state = self.broker_state
                if self.ensure_topics is not None and state is not None and state.up is not True:
                    self.ensure_topics()
                sent = self.relay_once()
                self.last_error = None
                self._failing_since = None
                delay = 0.2
                if sent and self.broker_state is not None:
                    self.broker_state.reachable()
                if sent < self.batch_size and requested > self._checkpoints_done:
                    self._checkpoints_done = requested  # drained past the request
                    self.db.checkpoint()
                if sent < self.batch_size:
                    self._wake.wait(self.idle_interval)
                    self._wake.clear()
            except Exception as exc:
                self.last_error = str(exc) or type(exc).__name__
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._count_pending()
                if isinstance(exc, BROKER_ERRORS):
                    # a producer that failed against a broker that went away can stay broken
                    # against the one that comes back (InitProducerId answered UnknownError
                    # forever after an embedded-broker restart): the next pass gets a fresh one
                    self.publisher.close(timeout=1)
                if self.broker_state is not None and isinstance(exc, BROKER_ERRORS):
                    # logged by the state once per outage, not once per retry
                    self.broker_state.unreachable(f"{self.name} outbox relay", exc)
                    log.debug("outbox relay of %s failed (%s); retrying", self.name, exc)
                else:
                    log.warning(
                        "outbox relay of %s failed (%s); retrying in %.1fs", self.name, exc, delay
                    )
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _count_pending(self) -> None:
        """``crm_outbox_pending`` while the relay cannot publish (a COUNT of a small table;
        the passes that publish set it without counting)."""
        try:
            metrics.OUTBOX_PENDING.labels(self.name).set(self.pending())
        except Exception:  # the database may be what failed
            log.debug("outbox of %s: rows not counted", self.name, exc_info=True)

    def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        return self.publish_outbox()

    def write_guard(self) -> contextlib.AbstractContextManager[object]:
        """Held while the relay deletes what it published; a service whose writers must
        queue on a lock of their own (ingest on SQLite) returns that lock here."""
        return contextlib.nullcontext()

    def publish_outbox(self) -> int:
        """Publish the oldest outbox rows in order, then delete them; returns how many."""
        with self._pass_lock:
            return self._publish_outbox()

    def _publish_outbox(self) -> int:
        table = OUTBOX
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
        if len(rows) < self.batch_size:
            metrics.OUTBOX_PENDING.labels(self.name).set(0)  # drained (as of this pass)
        return len(rows)

    def pending(self) -> int:
        from sqlalchemy import func

        with self.db.sessions() as session:
            table = OUTBOX
            return int(session.execute(select(func.count()).select_from(table)).scalar_one())
