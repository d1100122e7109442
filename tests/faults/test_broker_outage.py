"""A broker outage costs no REST availability, no topic layout and no flood of log lines."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from devtools.broker import EmbeddedBroker, free_port
from devtools.devrun import Child, Supervisor
from devtools.testing import read_topic, unique, wait_for
from services.ingest.app import create_app
from services.ingest.config import Settings
from shared import manifest, topics
from shared.broker_state import KAFKA_LOG_FILTER, BrokerState, OutageLogFilter
from shared.topic_keeper import keeps
from tests.conftest import ADMIN_KEY, api_client

HEADERS = {"X-API-Key": ADMIN_KEY}
KILLS = 3


def order(order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": f"cust-{order_id}",
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "88.00",
    }


def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {str(t["name"]): len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()


def topics_present(bootstrap: str, names: list[str]) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(names) <= set(admin.list_topics())
    except Exception:
        return False
    finally:
        admin.close()


def sigkill(broker: EmbeddedBroker) -> None:
    assert broker.process is not None
    os.killpg(broker.process.pid, signal.SIGKILL)
    broker.process.wait(5)
    broker.process = None


# --------------------------------------------------------------------------- logging


def test_each_kafka_warning_passes_once_per_outage() -> None:
    log_filter = OutageLogFilter()

    def record(name: str, level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, (), None)

    refused = record("kafka.conn", logging.ERROR, "Connect attempt to %s returned error %s")
    passed = [log_filter.filter(refused) for _ in range(50)]
    assert passed.count(True) == 1
    assert log_filter.filter(record("shared.bus", logging.WARNING, "x"))  # ours: untouched
    assert log_filter.filter(record("kafka.conn", logging.INFO, "y"))  # below WARNING
    log_filter.reset()  # the broker is back: the next outage is logged again
    assert log_filter.filter(refused)
    print("\n50 identical kafka-python errors in one outage: 1 logged")


def test_broker_state_logs_once_per_change(caplog) -> None:
    caplog.set_level(logging.INFO, logger="shared.broker_state")
    state = BrokerState("svc")
    state.reachable()
    for _ in range(20):
        state.unreachable("relay", ConnectionError("refused"))
    for _ in range(20):
        state.reachable()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "broker unreachable (relay: ConnectionError: refused)" in messages[0]
    assert "broker reachable again" in messages[1]


# --------------------------------------------------------------------------- a running service


@pytest.mark.kafka
def test_ingest_answers_through_a_broker_sigkill_and_gets_its_topics_back(
    tmp_path: Path, sqlite_url: str, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(KAFKA_LOG_FILTER)
    port = free_port()
    namespace = unique("ns") + "."
    first = EmbeddedBroker(port=port, log_path=tmp_path / "b1.log").start()
    second: EmbeddedBroker | None = None
    settings = Settings(
        kafka_bootstrap_servers=first.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=sqlite_url,
        api_key=ADMIN_KEY,
        consumer_group=unique("g"),
        run_consumer=True,
        epoch_check_interval=1.0,
        topic_check_seconds=0.5,
    )
    topic = namespace + topics.ORDERS
    statuses: list[int] = []
    try:
        with api_client(create_app(settings)) as client:
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            wait_for(runtime.topics_ready.is_set, timeout=30, what="topics")
            own = list(runtime.topic_keeper.names)

            def post(order_id: str) -> None:
                response = client.post("/v1/orders", json=order(order_id), headers=HEADERS)
                statuses.append(response.status_code)

            for i in range(5):
                post(f"A{i}")
            read_topic(first.bootstrap_servers, topic, expect=5)
            expected = {f"A{i}" for i in range(5)}
            current = first
            for kill in range(KILLS):
                sigkill(current)
                for i in range(10):
                    post(f"D{kill}-{i}")  # the broker is dead: still stored and answered
                    expected.add(f"D{kill}-{i}")
                wait_for(lambda: runtime.broker_state.down, timeout=30, what="outage noticed")
                current = EmbeddedBroker(port=port, log_path=tmp_path / f"b{kill}.log").start()
                second = current
                # no `make run` here to create the topics: the service itself must
                # (the keeper, or ingest's own replay, whichever comes first)
                wait_for(
                    lambda b=current: topics_present(b.bootstrap_servers, own),
                    timeout=60,
                    what="topics recreated",
                )
                events = read_topic(
                    current.bootstrap_servers, topic, expect=len(expected), timeout=60
                )
                assert {e.data.order_id for e in events} == expected
                counts = partition_counts(current.bootstrap_servers, own)
                assert counts == dict.fromkeys(own, 3), (kill, counts)
                wait_for(lambda: runtime.broker_state.up, timeout=30, what="broker up again")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert statuses == [202] * (5 + 10 * KILLS)
    ours = [r.getMessage() for r in caplog.records if r.name == "shared.broker_state"]
    # once per change: each outage is one line down and one line up, whatever the retries
    assert sum("broker unreachable" in m for m in ours) == runtime.broker_state.outages, ours
    assert sum("reachable again" in m for m in ours) == runtime.broker_state.outages, ours
    kafka_lines = [r for r in caplog.records if r.name.startswith("kafka")]
    print(
        f"\nbroker SIGKILL x{KILLS}: {len(statuses)} of {len(statuses)} POSTs answered 202, "
        f"{len(events)} orders on the last broker, {len(own)} topics recreated with 3 "
        f"partitions each time, "
        f"{len(ours)} broker-state lines and {len(kafka_lines)} client warnings logged"
    )


# --------------------------------------------------------------------------- make run


class SleepingChild(Child):
    """A stand-in service: a process that only sleeps."""

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        self.started_at = time.monotonic()


@pytest.mark.kafka
def test_make_run_restarts_the_dead_broker_alone_with_its_topics(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    namespace = unique("ns") + "."
    monkeypatch.setenv("CRM_TOPIC_NAMESPACE", namespace)
    supervisor = Supervisor()
    supervisor.broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    supervisor.broker.start()
    children = [SleepingChild(n, 0, {}, tmp_path / f"{n}.log") for n in ("ingest", "profile")]
    for child in children:
        child.start()
    supervisor.children = children
    try:
        pids = [c.process.pid for c in children if c.process]
        broker_pid = supervisor.broker.process.pid if supervisor.broker.process else 0
        sigkill_process(supervisor.broker)
        supervisor._restart_dead()
        assert supervisor.broker.process is not None
        assert supervisor.broker.process.pid != broker_pid
        assert [c.process.pid for c in children if c.process] == pids
        assert all(c.process is not None and c.process.poll() is None for c in children)
        assert [c.restarts for c in children] == [0, 0]
        names = [namespace + t for t in manifest.public_topics() if keeps(t)]
        counts = partition_counts(supervisor.broker.bootstrap_servers, names)
        assert counts == dict.fromkeys(names, 3)
        # the API key topics keep their own layout: one partition
        keys = [namespace + topics.APIKEYS, namespace + topics.APIKEY_USAGE]
        assert partition_counts(supervisor.broker.bootstrap_servers, keys) == dict.fromkeys(keys, 1)
        print(f"\nbroker SIGKILL under make run: broker restarted, 0 of {len(children)} services")
    finally:
        supervisor.shutdown()


def sigkill_process(broker: EmbeddedBroker) -> None:
    """Kill the broker the way the issue did, leaving ``process`` for the supervisor to see."""
    assert broker.process is not None
    os.killpg(broker.process.pid, signal.SIGKILL)
    broker.process.wait(5)


# --------------------------------------------------------------------------- every outbox relay


@pytest.mark.kafka
def test_an_outbox_relay_publishes_again_after_a_broker_restart(
    tmp_path: Path, db_url: str
) -> None:
    """The relay of profile, segment and campaign (shared.outbox.OutboxRelay) across broker
    SIGKILLs: rows queued while the broker is away wait in the outbox (counted by
    ``crm_outbox_pending``, shown by the relay's ``failing_for``), and each is published
    once a broker is back on the port. Found by an outside try: a relay kept its old
    producer, whose InitProducerId failed forever against the new broker."""
    from prometheus_client import REGISTRY

    from shared.db import Database, make_metadata
    from shared.outbox import OutboxRelay, add_raw_to_outbox
    from shared.producer import Publisher, ensure_topics

    port = free_port()
    namespace = unique("ns") + "."
    name = unique("relay")
    brokers = [EmbeddedBroker(port=port, log_path=tmp_path / "b0.log").start()]
    bootstrap = brokers[0].bootstrap_servers
    db = Database.from_url(db_url)
    make_metadata().create_all(db.engine)
    publisher = Publisher(bootstrap, namespace, auto_create_topics=False)
    relay = OutboxRelay(name, db, publisher, idle_interval=0.05)
    relay.broker_state = BrokerState(name)
    relay.ensure_topics = lambda: ensure_topics(
        bootstrap, [topics.PROFILES], 3, namespace=namespace, timeout=5
    )

    def queue(prefix: str, n: int) -> set[str]:
        with db.sessions() as session:
            add_raw_to_outbox(
                session,
                [(topics.PROFILES, f"{prefix}{i}", f"{prefix}{i}".encode()) for i in range(n)],
            )
            session.commit()
        relay.notify()
        return {f"{prefix}{i}" for i in range(n)}

    def pending_gauge() -> float:
        return REGISTRY.get_sample_value("crm_outbox_pending", {"service": name}) or 0.0

    expected = queue("before-", 5)
    relay.start()
    try:
        values = read_topic(bootstrap, namespace + topics.PROFILES, expect=5, decode=False)
        assert {r.value.decode() for r in values} == expected
        took: list[float] = []
        for kill in range(1, 3):
            sigkill(brokers[-1])
            expected = queue(f"away{kill}-", 10)  # a restarted embedded broker is empty
            wait_for(lambda: relay.failing_for() > 0, timeout=120, what="the relay to fail")
            wait_for(lambda: pending_gauge() >= 10, timeout=30, what="the pending gauge")
            brokers.append(EmbeddedBroker(port=port, log_path=tmp_path / f"b{kill}.log").start())
            back = time.monotonic()
            values = read_topic(
                bootstrap,
                namespace + topics.PROFILES,
                expect=len(expected),
                timeout=90,
                decode=False,
            )
            took.append(time.monotonic() - back)
            assert {r.value.decode() for r in values} == expected, kill
            wait_for(lambda: relay.failing_for() == 0, timeout=30, what="the relay to recover")
            wait_for(lambda: pending_gauge() == 0, timeout=30, what="the pending gauge at 0")
    finally:
        relay.stop()
        publisher.close()
        db.dispose()
        for broker in brokers:
            broker.stop()
    print(
        f"\noutbox relay across {len(took)} broker SIGKILLs: {len(expected)} of "
        f"{len(expected)} rows queued while it was away published once it was back each time "
        f"({', '.join(f'{t:.1f}' for t in took)} s after each restart)"
    )


@pytest.mark.kafka
def test_the_key_topic_readers_never_have_it_created(
    broker: EmbeddedBroker, namespace: str
) -> None:
    """After a broker restart the key feed asked for crm.apikeys.v1 before `make run`
    re-created it, and the embedded broker auto-created it with 4 partitions (outside try
    of issue 12). The key readers' metadata requests now name no topic; a plain consumer's
    do (the control: it has the topic created)."""
    from kafka import KafkaConsumer, TopicPartition

    from shared.apikeys import APIKEY_USAGE_TOPIC, APIKEYS_TOPIC
    from shared.producer import consumer_without_topic_creation

    ours, control = namespace + APIKEYS_TOPIC, namespace + APIKEY_USAGE_TOPIC
    reader = consumer_without_topic_creation(
        bootstrap_servers=broker.bootstrap_servers, group_id=None, request_timeout_ms=5000
    )
    plain = KafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=None, request_timeout_ms=5000
    )
    try:
        # what the feed does after a broker restart: it is assigned the topic and polls
        for consumer, topic in ((reader, ours), (plain, control)):
            consumer.assign([TopicPartition(topic, 0)])
            for _ in range(5):
                consumer.poll(timeout_ms=200)
        wait_for(
            lambda: topics_present(broker.bootstrap_servers, [control]),
            timeout=20,
            what="the control topic auto-created",
        )
        assert not topics_present(broker.bootstrap_servers, [ours])
    finally:
        reader.close()
        plain.close()
