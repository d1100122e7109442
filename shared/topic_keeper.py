"""Keeps a service's topics present, with the configured partition count.

The embedded broker keeps nothing on disk: after it restarts, its topics are gone,
and the first client that asks for one has it auto-created with the broker's default
of 4 partitions (Tansu ignores a client's ``allow_auto_create_topics=False``), not
``CRM_TOPIC_PARTITIONS``. So each service checks its topics every few seconds and
after every failed publish, creates the missing ones with the configured count
before its relay sends again, and reports a topic whose count differs (a drift:
partitions cannot be removed, so it is reported, in ``/readyz`` and the
``crm_topic_partition_drift`` gauge, not repaired). ``make run`` also creates every
topic the moment it restarted the broker, which leaves clients almost no window.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Sequence

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared import metrics, topics
from shared.broker_state import BrokerState

log = logging.getLogger(__name__)

#: topics whose layout is not ``CRM_TOPIC_PARTITIONS``: the API key topics have one
#: partition (and the record topic is compacted); :func:`shared.apikeys.ensure_keys_topics`
#: makes them, so the keeper neither creates nor judges them
OWN_LAYOUT = (topics.APIKEYS, topics.APIKEY_USAGE)


def keeps(name: str) -> bool:
    """Whether a (namespaced) topic gets the configured partition count."""
    return not name.endswith(OWN_LAYOUT)


def any_listening(bootstrap_servers: str, timeout: float = 0.5) -> bool:
    """Whether any of the bootstrap servers accepts a TCP connection."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def create_missing_topics(
    bootstrap_servers: str,
    names: Sequence[str],
    partitions: int,
    replication_factor: int = 1,
    timeout_ms: int = 5000,
) -> tuple[list[str], dict[str, int]]:
    """One pass: create the missing topics; returns (created, partition count of each)."""
    if not any_listening(bootstrap_servers):
        # fail at once: an admin client against a closed port retries for seconds, which
        # held up the relay and every shutdown while the broker was away
        raise ConnectionError(f"no broker listens at {bootstrap_servers}")
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=timeout_ms,
    )
    try:
        existing = set(admin.list_topics())
        created = [n for n in dict.fromkeys(names) if n not in existing]
        for name in created:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [NewTopic(name, partitions, replication_factor)], timeout_ms=timeout_ms
                )
        counts = {
            str(t["name"]): len(t["partitions"])
            for t in admin.describe_topics(list(dict.fromkeys(names)))
        }
        return created, counts
    finally:
        with contextlib.suppress(Exception):
            admin.close()


class TopicKeeper:
    """A service's topics (names already namespaced) and the partitions they should have."""

    def __init__(
        self,
        service: str,
        bootstrap_servers: str,
        names: Sequence[str],
        partitions: int,
        replication_factor: int = 1,
        broker_state: BrokerState | None = None,
    ) -> None:
        self.service = service
        self.bootstrap_servers = bootstrap_servers
        self.names = [n for n in dict.fromkeys(names) if keeps(n)]
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.broker_state = broker_state
        #: topics whose partition count is not the configured one: {topic: count}
        self.drift: dict[str, int] = {}
        #: topics this keeper created again after they went missing
        self.recreated = 0
        self._lock = threading.Lock()
        self._checked_once = False

    def check(self) -> list[str]:
        """Create what is missing; returns the topics created. Raises if the broker is down."""
        with self._lock:
            try:
                created, counts = create_missing_topics(
                    self.bootstrap_servers, self.names, self.partitions, self.replication_factor
                )
            except Exception as exc:
                if self.broker_state is not None:
                    self.broker_state.unreachable("topic check", exc)
                raise
            if self.broker_state is not None:
                self.broker_state.reachable()
            if created:
                if self._checked_once:
                    self.recreated += len(created)
                    log.warning(
                        "%s: topics missing on the broker, created again with %d partitions: %s",
                        self.service,
                        self.partitions,
                        ", ".join(created),
                    )
                else:
                    log.info("%s: created topics %s", self.service, ", ".join(created))
            self._checked_once = True
            self._record_drift(counts)
            return created

    def check_quietly(self) -> None:
        """:meth:`check` for a periodic job: a down broker is already reported by its state."""
        with contextlib.suppress(Exception):
            self.check()

    def _record_drift(self, counts: dict[str, int]) -> None:
        drift = {t: n for t, n in counts.items() if n != self.partitions}
        for topic in self.names:
            metrics.TOPIC_PARTITION_DRIFT.labels(self.service, topic).set(
                counts.get(topic, self.partitions) - self.partitions
            )
        for topic, count in drift.items():
            if self.drift.get(topic) != count:
                log.error(
                    "%s: topic %s has %d partitions, not the configured %d (created by "
                    "another client before this service could); keys now map to other "
                    "partitions: recreate it, or set CRM_TOPIC_PARTITIONS=%d",
                    self.service,
                    topic,
                    count,
                    self.partitions,
                    count,
                )
        self.drift = drift
