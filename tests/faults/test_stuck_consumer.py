"""A consumer group member stuck in its rebalance is detected, reported and replaced.

The stuck group is reproduced with a fault-injecting proxy in front of a broker of
the test's own: every SyncGroup on the first member's connections answers error 27,
as the embedded broker did for 16 minutes after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Column, Integer, String, Table, insert, select
from sqlalchemy.orm import Session

from devtools.broker import EmbeddedBroker, free_port
from devtools.testing import unique, wait_for
from shared import topics
from shared.bus import ConsumerLoop, Inbound, Publisher, ensure_topics
from shared.consumer_health import ProgressWatch, rebuild_delay
from shared.db import Database, make_metadata
from shared.events import Order, OrderRecordedEvent, encode_event
from shared.registry import Registry
from tests.faults.kafka_proxy import KafkaFaultProxy

metadata = make_metadata()
seen = Table(
    "stuck_seen",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(100)),
)


def order_event(order_id: str) -> OrderRecordedEvent:
    return OrderRecordedEvent(
        source="test",
        key="c1",
        data=Order(
            order_id=order_id,
            customer_id="c1",
            status="paid",
            created_at="2026-11-01T10:00:00+08:00",
            currency="CNY",
            total_amount="10.00",
        ),
    )


def record_orders(session: Session, messages: list[Inbound], deps: None) -> None:
    for message in messages:
        session.execute(insert(seen).values(order_id=message.event.data.order_id))


#: as a service declares what it consumes
ORDERS: Registry[None] = Registry({OrderRecordedEvent: record_orders})


def metric(name: str, consumer: str) -> float:
    return REGISTRY.get_sample_value(name, {"consumer": consumer}) or 0.0


# --------------------------------------------------------------------------- the watch alone


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_watch_flags_no_assignment_past_the_bound_only() -> None:
    clock = FakeClock()
    watch = ProgressWatch(stall_after=30, clock=clock)
    clock.now += 29
    assert watch.observe({}, 0) is None
    clock.now += 2
    assert watch.observe({}, 0) == "no partition assignment for 31s"
    clock.now += 1
    assert watch.observe({"tp": (5, 5)}, 0) is None  # assigned, caught up: healthy again


def test_watch_flags_no_progress_while_behind_but_not_an_idle_member() -> None:
    clock = FakeClock()
    watch = ProgressWatch(stall_after=30, clock=clock)
    assert watch.observe({"tp": (7, 7)}, 0) is None
    clock.now += 300  # idle, caught up: never stalled
    assert watch.observe({"tp": (7, 7)}, 0) is None
    assert watch.observe({"tp": (7, 9)}, 0) is None  # behind from now
    clock.now += 20
    assert watch.observe({"tp": (7, 9)}, 2) is None  # progress resets the clock
    clock.now += 20
    assert watch.observe({"tp": (9, 12)}, 0) is None
    clock.now += 31
    assert watch.observe({"tp": (9, 12)}, 0) == "no progress for 31s while behind the broker"
    # an unknown position or high watermark is not evidence of being behind
    assert ProgressWatch(clock=clock).observe({"tp": (None, 12)}, 0) is None


def test_fresh_members_back_off() -> None:
    assert [rebuild_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


# --------------------------------------------------------------------------- a real stuck group


@pytest.fixture
def proxied_broker(tmp_path) -> Iterator[tuple[EmbeddedBroker, KafkaFaultProxy]]:
    proxy_port = free_port()
    broker = EmbeddedBroker(advertised_port=proxy_port, log_path=tmp_path / "tansu.log")
    broker.start()
    proxy = KafkaFaultProxy(("127.0.0.1", broker.port), proxy_port).start()
    try:
        yield broker, proxy
    finally:
        proxy.stop()
        broker.stop()


@pytest.mark.kafka
def test_a_member_stuck_in_sync_group_is_reported_and_replaced(
    proxied_broker, db_url, caplog
) -> None:
    _broker, proxy = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    namespace = unique("ns") + "."
    ensure_topics(bootstrap, [topics.ORDERS, topics.DEADLETTER], 3, namespace=namespace)
    db = Database.from_url(db_url)
    metadata.create_all(db.engine)
    publisher = Publisher(bootstrap, namespace)
    name = unique("stuck")
    loop = ConsumerLoop(
        name=name,
        bootstrap_servers=bootstrap,
        group_id=unique("g"),
        topics=[topics.ORDERS],
        db=db,
        publisher=publisher,
        batch_handler=ORDERS.batch_handler(None),
        namespace=namespace,
        stall_after=10.0,
    )
    caplog.set_level(logging.WARNING, logger="shared.consumer_loop")
    publisher.publish_all([(topics.ORDERS, "c1", encode_event(order_event(i))) for i in "abc"])
    proxy.arm_stuck_sync_group()
    loop.start()
    try:
        # the first member never gets a partition: reported once past the bound
        wait_for(lambda: loop.stall_reason is not None, timeout=60, what="stall detected")
        assert loop.health().startswith("stalled: no partition assignment for")
        assert metric("crm_consumer_stalled", name) == 1
        assert any("stalled" in r.getMessage() and name in r.getMessage() for r in caplog.records)
        failed_before = proxy.sync_groups_failed
        assert failed_before >= 1
        print(f"\nstuck member: {failed_before} SyncGroup answers rewritten to error 27")
        # the broker now answers a fresh member; the stuck member's connections stay stuck
        proxy.disarm()
        wait_for(lambda: loop.health() == "ok", timeout=60, what="a fresh member is assigned")
        with db.sessions() as session:
            wait_for(
                lambda: len(list(session.execute(select(seen.c.order_id)).scalars())) == 3,
                timeout=30,
                what="the records waiting are processed",
            )
        assert metric("crm_consumer_stalled", name) == 0
        assert metric("crm_consumer_rebuilds_total", name) == loop.rebuilds >= 1
        print(
            f"healed: {loop.rebuilds} fresh member(s), 3 of 3 waiting records processed, "
            f"{proxy.sync_groups_passed} SyncGroup passed"
        )
    finally:
        loop.stop()
        publisher.close()
        db.dispose()


def test_readyz_is_503_with_the_reason_while_a_consumer_is_stalled() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from shared.api import health_router

    class Runtime:
        def __init__(self) -> None:
            self.name = "segment"
            self.settings = SimpleNamespace(consumers_url="")  # consumers in this process
            self.consumers = {"orders": "ok", "erasures": "ok"}
            self.broker = "ok"

        def readiness(self) -> dict[str, Any]:
            return {
                "database": "ok",
                "broker": self.broker,
                "topics": "ok",
                "consumers": dict(self.consumers),
            }

    app = FastAPI()
    app.include_router(health_router())
    app.state.runtime = runtime = Runtime()
    client = TestClient(app)
    assert client.get("/readyz").status_code == 200
    runtime.consumers["erasures"] = "stalled: no partition assignment for 31s"
    stalled = client.get("/readyz")
    assert stalled.status_code == 503
    assert stalled.json()["service"] == "segment"
    assert stalled.json()["reasons"] == [
        "consumer erasures stalled: no partition assignment for 31s"
    ]
    # while the broker is away every consumer waits: the API still serves
    runtime.broker = "unreachable"
    away = client.get("/readyz")
    assert (away.status_code, away.json()["status"]) == (200, "degraded")
