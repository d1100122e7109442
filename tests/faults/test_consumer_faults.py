"""The consumer loop under faults, against the real broker and both databases: killed
between its database commit and its offset commit, rebalanced again and again, and a
handler slower than ``max_poll_interval_ms``. Each case counts what it proves: every
record's effect exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, Integer, String, Table, func, insert, select
from sqlalchemy.orm import Session

from devtools.testing import unique, wait_for
from shared import topics
from shared.bus import BatchHandler, ConsumerLoop, Inbound, Publisher, ensure_topics
from shared.db import Database, make_metadata
from shared.events import Order, OrderRecordedEvent, encode_event
from shared.registry import RegisteredHandler, Registry

pytestmark = pytest.mark.kafka

metadata = make_metadata()
effects = Table(
    "fault_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(100)),
)


class Crash(Exception):
    """The process dies here (the loop drops its member without committing offsets)."""


def order_event(order_id: str) -> OrderRecordedEvent:
    return OrderRecordedEvent(
        source="test",
        key=f"c-{order_id}",
        data=Order(
            order_id=order_id,
            customer_id=f"c-{order_id}",
            status="paid",
            created_at="2026-11-01T10:00:00+08:00",
            currency="CNY",
            total_amount="10.00",
        ),
    )


def record_effects(session: Session, messages: list[Inbound], deps: None) -> None:
    for message in messages:
        session.execute(insert(effects).values(order_id=message.event.data.order_id))


def on_orders(handler: RegisteredHandler[None]) -> BatchHandler:
    """The loop's batch handler of a registry with ``handler`` for ``order.recorded``, as a
    service's consumer is built."""
    return Registry({OrderRecordedEvent: handler}).batch_handler(None)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database.from_url(db_url)
    metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def publisher(broker, namespace) -> Iterator[Publisher]:
    ensure_topics(
        broker.bootstrap_servers, [topics.ORDERS, topics.DEADLETTER], 3, namespace=namespace
    )
    pub = Publisher(broker.bootstrap_servers, namespace)
    yield pub
    pub.close()


def make_loop(broker, namespace, db, publisher, group: str, **kwargs: Any) -> ConsumerLoop:
    return ConsumerLoop(
        name=kwargs.pop("name", unique("faults")),
        bootstrap_servers=broker.bootstrap_servers,
        group_id=group,
        topics=[topics.ORDERS],
        db=db,
        publisher=publisher,
        batch_handler=kwargs.pop("batch_handler", on_orders(record_effects)),
        namespace=namespace,
        backoff_base=0.01,
        **kwargs,
    )


def publish(publisher: Publisher, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(count)]
    publisher.publish_all([(topics.ORDERS, f"c-{i}", encode_event(order_event(i))) for i in ids])
    return ids


def assigned(loop: ConsumerLoop) -> set[Any]:
    consumer = loop._consumer
    try:
        return set(consumer.assignment() or ()) if consumer is not None else set()
    except Exception:
        return set()


def effect_counts(db: Database) -> tuple[int, int]:
    """(rows, distinct order ids) written by the handler."""
    with db.sessions() as session:
        rows = session.execute(select(func.count()).select_from(effects)).scalar_one()
        distinct = session.execute(
            select(func.count(func.distinct(effects.c.order_id)))
        ).scalar_one()
    return int(rows), int(distinct)


def test_killed_between_db_commit_and_offset_commit_five_times(
    broker, namespace, db, publisher
) -> None:
    loop = make_loop(broker, namespace, db, publisher, unique("g"), max_poll_records=7)
    crashes = 0
    commit = loop._commit_offsets

    def dies_five_times(consumer: Any, offsets: Any) -> None:
        nonlocal crashes
        if crashes < 5:
            crashes += 1
            raise Crash("killed after the database committed, before the offsets")
        commit(consumer, offsets)

    loop._commit_offsets = dies_five_times  # type: ignore[method-assign]
    ids = publish(publisher, "kill", 60)
    loop.start()
    try:
        wait_for(lambda: effect_counts(db)[1] == 60, timeout=90, what="every record once")
        wait_for(lambda: crashes == 5, timeout=30)
        time.sleep(1)  # a late redelivery would show now
        rows, distinct = effect_counts(db)
    finally:
        loop.stop()
    assert (rows, distinct) == (len(ids), len(ids))
    print(
        f"\nkilled between DB commit and offset commit x{crashes}: {len(ids)} records, "
        f"{rows} effects, 0 lost, 0 doubled"
    )


def test_rebalance_churn_five_times(broker, namespace, db, publisher) -> None:
    group = unique("g")
    steady = make_loop(broker, namespace, db, publisher, group)
    steady.start()
    produced: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        batch = 0
        while not stop.is_set():
            produced.extend(publish(publisher, f"churn{batch}", 20))
            batch += 1
            stop.wait(0.3)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        for _ in range(5):  # a second member joins and leaves: two rebalances each time
            extra = make_loop(broker, namespace, db, publisher, group)
            extra.start()
            # it leaves once it holds partitions (a member leaving in the middle of its
            # join can leave the embedded broker's group stuck: see the report of issue 12)
            wait_for(lambda e=extra: assigned(e), timeout=60, what="the extra member joined")
            extra.stop()
            wait_for(lambda: len(assigned(steady)) == 3, timeout=60, what="steady has all 3")
        stop.set()
        producer.join(10)
        wait_for(lambda: effect_counts(db)[1] == len(produced), timeout=90, what="all records")
        time.sleep(1)
        rows, distinct = effect_counts(db)
    finally:
        stop.set()
        steady.stop()
    assert (rows, distinct) == (len(produced), len(produced))
    print(
        f"\nrebalance churn x5 (10 rebalances): {len(produced)} records, {rows} effects, "
        "0 lost, 0 doubled"
    )


def test_a_handler_slower_than_max_poll_interval(broker, namespace, db, publisher) -> None:
    slow_once = threading.Event()

    def slow_effect(session: Session, messages: list[Inbound], deps: None) -> None:
        if not slow_once.is_set():
            slow_once.set()
            time.sleep(4)  # > max_poll_interval_ms: the member is dropped from the group
        record_effects(session, messages, deps)

    loop = make_loop(
        broker,
        namespace,
        db,
        publisher,
        unique("g"),
        batch_handler=on_orders(slow_effect),
        max_poll_records=5,
        consumer_overrides={"max_poll_interval_ms": 2000},
    )
    ids = publish(publisher, "slow", 30)
    loop.start()
    try:
        wait_for(lambda: effect_counts(db)[1] == 30, timeout=90, what="every record once")
        time.sleep(1)
        rows, distinct = effect_counts(db)
    finally:
        loop.stop()
    assert slow_once.is_set()
    assert (rows, distinct) == (len(ids), len(ids))
    print(
        f"\nhandler 4 s > max_poll_interval_ms 2 s: {len(ids)} records, {rows} effects, "
        "0 lost, 0 doubled"
    )
