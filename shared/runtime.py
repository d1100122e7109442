"""What a running service holds: its database, publisher, outbox relay, consumers and timers.

The API and the consumers run in one process by default: uvicorn serves the
FastAPI app on the event loop while each consumer loop, the outbox relay and
periodic jobs run in their own threads. ``python -m services.<name> consume``
runs the consumers alone and ``... api`` the API alone, so either can be scaled
on its own (consumers scale up to the topic's partition count).
"""

from __future__ import annotations

import functools
import gc
import logging
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from shared import manifest
from shared.broker_state import BrokerState
from shared.bus import ConsumerLoop, OutboxRelay, Publisher
from shared.config import ServiceSettings
from shared.db import Database, prune_platform_tables, run_migrations
from shared.events import utcnow
from shared.topic_keeper import TopicKeeper

log = logging.getLogger(__name__)

#: gen0 / gen1 / gen2 thresholds of the cyclic collector in a service process
#: (CPython's defaults: 700 / 10 / 10)
GC_THRESHOLDS = (10_000, 20, 20)
_gc_tuned = False


def tune_gil(settings: ServiceSettings) -> None:
    """The interpreter's switch interval from ``CRM_GIL_SWITCH_INTERVAL_MS``: how long a
    thread holding the GIL keeps it while another (the API's event loop) waits. Called by
    the service command line, not in tests."""
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running service process.

    Everything alive now (modules, the app, schemas, the engine) lives as long as the
    process: frozen, it is out of the collector's sight, so a full collection no longer
    walks it. And collections run less often (thresholds only ever raised; a collector
    switched off stays off): requests and consumed batches allocate many short-lived
    objects that reference counting frees anyway. Measured: ~20 % of ingest's batch path
    (bench_ingest), ~30 % of segment's consumer (bench_segment), a third more profile
    events/s (bench_profile). Called by the service command line, not in tests.
    """
    global _gc_tuned
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    current = gc.get_threshold()
    if current[0] == 0:
        return
    gc.set_threshold(*(max(a, b) for a, b in zip(current, GC_THRESHOLDS, strict=True)))


def freeze_startup_heap() -> None:
    """Freeze what start-up added (migrations, clients) if this process tuned its
    collector with :func:`tune_gc`; a no-op otherwise (tests)."""
    if _gc_tuned:
        gc.collect()
        gc.freeze()


@dataclass
class PeriodicJob:
    """A function run every ``interval`` seconds in its own thread (e.g. a daily sweep)."""

    name: str
    interval: float
    func: Callable[[], Any]
    run_at_start: bool = False
    #: which process runs it when a service's API and consumers run apart (``api``,
    #: ``consume``; ``serve`` runs every job): ``any``, ``api`` (what its answers need, e.g.
    #: gauges on its /metrics) or ``consumers`` (work on the consumed state: a sweep, a
    #: rescoring, a fit, the scheduler; it runs once, beside the consumers, not again in
    #: every API process)
    where: Literal["any", "api", "consumers"] = "any"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if not self.run_at_start and self._stop.wait(self.interval):
            return
        while not self._stop.is_set():
            try:
                self.func()
            except Exception:
                log.exception("periodic job %s failed", self.name)
            if self._stop.wait(self.interval):
                return

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


ConsumerFactory = Callable[["ServiceRuntime"], list[ConsumerLoop]]


class ServiceRuntime:
    """Owns a service's long-lived resources and their threads. A service that holds more
    (a clock, a launcher, validation rules) subclasses it with those as typed attributes
    (``services/<name>/runtime.py``), which its routes reach through a typed dependency."""

    def __init__(
        self,
        settings: ServiceSettings,
        migrations_dir: Path,
        consumer_factory: ConsumerFactory | None = None,
        consumed_topics: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.migrations_dir = migrations_dir
        self.db = Database.from_url(
            settings.resolved_database_url, sqlite_pragmas=settings.sqlite_pragmas
        )
        # topics come from the topic keeper, with the configured partitions, never from a send
        self.publisher = Publisher(
            settings.kafka_bootstrap_servers,
            settings.topic_namespace,
            auto_create_topics=False,
            **settings.producer_tuning,
        )
        self.relay = OutboxRelay(self.name, self.db, self.publisher)
        self.broker_state = BrokerState(self.name)
        self.consumer_factory = consumer_factory
        self.topics = tuple(dict.fromkeys((*manifest.owned_topics(self.name), *consumed_topics)))
        self.topic_keeper = TopicKeeper(
            self.name,
            settings.kafka_bootstrap_servers,
            [settings.topic_namespace + t for t in self.topics],
            settings.topic_partitions,
            settings.replication_factor,
            self.broker_state,
        )
        self.consumers: list[ConsumerLoop] = []
        self.jobs: list[PeriodicJob] = []
        # a broker that restarted empty gets the topics back before a client auto-creates them
        self.jobs.append(
            PeriodicJob(
                f"{self.name}-topics",
                settings.topic_check_seconds,
                self.topic_keeper.check_quietly,
            )
        )
        self.jobs.append(PeriodicJob(f"{self.name}-retention", 3600, self.prune, run_at_start=True))
        if self.db.is_sqlite and settings.sqlite_background_checkpoint_seconds > 0:
            self.jobs.append(
                PeriodicJob(
                    f"{self.name}-sqlite-checkpoint",
                    settings.sqlite_background_checkpoint_seconds,
                    functools.partial(self.db.checkpoint, "PASSIVE"),
                )
            )
        #: called first by :meth:`stop` (a service's own workers: finish or hand back work)
        self.on_stop: list[Callable[[], None]] = []
        self.topics_ready = threading.Event()
        self._stop = threading.Event()
        self._init_thread: threading.Thread | None = None

    def prune(self) -> dict[str, int]:
        """Forget processed events and idempotency keys older than their retention."""
        now = utcnow()
        deleted = prune_platform_tables(
            self.db,
            processed_before=now - timedelta(days=self.settings.processed_events_retention_days),
            idempotency_before=now - timedelta(hours=self.settings.idempotency_key_retention_hours),
        )
        if any(deleted.values()):
            log.info("%s: retention removed %s", self.name, deleted)
        return deleted

    # lifecycle

    def migrate(self) -> None:
        run_migrations(self.migrations_dir, self.settings.resolved_database_url)

    def start(
        self,
        *,
        migrate: bool = True,
        run_consumers: bool | None = None,
        run_jobs: bool = True,
        serving_api: bool = True,
    ) -> None:
        """Migrate, start the relay, and (in the background) create topics and start consumers.

        ``serving_api``: whether this process serves the API (the ``consume`` command does
        not); with ``run_consumers``, it picks the periodic jobs this process runs
        (:meth:`jobs_for`)."""
        if migrate:
            self.migrate()
        consumers = self.settings.run_consumer if run_consumers is None else run_consumers
        # here, not in __init__: a service may have replaced the relay with its own
        self.relay.broker_state = self.broker_state
        self.relay.ensure_topics = self.topic_keeper.check
        self.relay.start()
        if run_jobs:
            for job in self.jobs_for(consumers=consumers, api=serving_api):
                job.start()
        self._init_thread = threading.Thread(
            target=self._bring_up_kafka, args=(consumers,), name=f"{self.name}-init", daemon=True
        )
        self._init_thread.start()

    def jobs_for(self, *, consumers: bool, api: bool) -> list[PeriodicJob]:
        """The periodic jobs of a process that runs the consumers and / or serves the API."""
        wanted = {"any"} | ({"consumers"} if consumers else set()) | ({"api"} if api else set())
        return [job for job in self.jobs if job.where in wanted]

    def _bring_up_kafka(self, run_consumers: bool) -> None:
        # The API serves even while the broker is down; topics and consumers follow.
        while not self._stop.is_set():
            try:
                self.topic_keeper.check()
                self.topics_ready.set()
                break
            except Exception as exc:  # the broker state logged the outage once
                log.debug("%s: topics not created yet (%s)", self.name, exc)
                self._stop.wait(2)
        if self._stop.is_set() or not run_consumers or self.consumer_factory is None:
            return
        self.consumers = self.consumer_factory(self)
        for consumer in self.consumers:
            self.configure(consumer)
            consumer.start()

    def configure(self, consumer: ConsumerLoop) -> None:
        """Give one of the service's consumers the settings and the runtime's parts."""
        settings = self.settings
        consumer.namespace = settings.topic_namespace
        consumer.stall_after = settings.consumer_stall_seconds
        consumer.gather_ms = settings.consumer_gather_ms
        consumer.broker_state = self.broker_state
        tuning = settings.side_consumer_tuning if consumer.side else settings.consumer_tuning
        consumer.consumer_overrides = {**tuning, **consumer.consumer_overrides}
        consumer.after_commit = self._chain(consumer.after_commit, self.relay.notify)
        consumer.outbox_relay = self.relay

    @staticmethod
    def _chain(first: Callable[[], None] | None, second: Callable[[], None]) -> Callable[[], None]:
        if first is None:
            return second

        def both() -> None:
            first()
            second()

        return both

    def stop(self) -> None:
        self._stop.set()
        for hook in self.on_stop:
            try:
                hook()
            except Exception:
                log.exception("%s: a stop hook failed", self.name)
        for consumer in self.consumers:
            consumer.stop()
        for job in self.jobs:
            job.stop()
        if self._init_thread is not None:
            # a daemon thread; it may be blocked connecting to an absent broker
            self._init_thread.join(1)
        self.relay.stop()
        self.publisher.close()
        self.db.dispose()

    def request_stop(self) -> None:
        """Ask :meth:`wait` to return (signal handlers of the consumer-only process)."""
        self._stop.set()

    def wait(self) -> None:
        """Block until :meth:`stop` (for the consumer-only process)."""
        while not self._stop.wait(1.0):
            pass

    # health

    def broker_reachable(self, timeout: float = 1.0) -> bool:
        for server in self.settings.kafka_bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                    return True
            except OSError:
                continue
        return False

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            self.db.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        checks["broker"] = "ok" if self.broker_reachable() else "unreachable"
        checks["topics"] = "ok" if self.topics_ready.is_set() else "pending"
        if self.topic_keeper.drift:
            # reported, not failed: the service serves either way
            checks["topic_drift"] = {
                topic: f"{count} partitions, configured {self.settings.topic_partitions}"
                for topic, count in self.topic_keeper.drift.items()
            }
        checks["consumers"] = {consumer.name: consumer.health() for consumer in self.consumers}
        failing = self.relay.failing_for()
        checks["outbox_relay"] = (
            "ok" if not failing else f"failing for {failing:.0f}s: {self.relay.last_error}"[:300]
        )
        return checks
