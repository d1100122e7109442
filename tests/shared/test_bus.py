"""The shared consumer loop and outbox relay against the real broker and both databases."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Column, Integer, String, Table, delete, func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from devtools.testing import read_topic, unique, wait_for
from shared import topics
from shared.bus import (
    BatchHandler,
    ConsumerLoop,
    Inbound,
    OutboxRelay,
    Publisher,
    add_raw_to_outbox,
    add_to_outbox,
    dead_letter_event,
    ensure_topics,
)
from shared.db import Database, make_metadata
from shared.events import Order, OrderRecordedEvent, encode_event
from shared.registry import RegisteredHandler, Registry

pytestmark = pytest.mark.kafka

metadata = make_metadata()
seen = Table(
    "seen",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(100)),
)


def order_event(order_id: str, customer: str = "c1") -> OrderRecordedEvent:
    return OrderRecordedEvent(
        source="test",
        key=customer,
        data=Order(
            order_id=order_id,
            customer_id=customer,
            status="paid",
            created_at="2026-11-01T10:00:00+08:00",
            currency="CNY",
            total_amount="10.00",
        ),
    )


def record_orders(session: Session, messages: list[Inbound], deps: None) -> None:
    for message in messages:
        session.execute(insert(seen).values(order_id=message.event.data.order_id))


def on_orders(handler: RegisteredHandler[None]) -> BatchHandler:
    """The loop's batch handler of a registry with ``handler`` for ``order.recorded``, as a
    service's consumer is built."""
    return Registry({OrderRecordedEvent: handler}).batch_handler(None)


def seen_ids(db: Database) -> list[str]:
    with db.sessions() as session:
        return list(session.execute(select(seen.c.order_id).order_by(seen.c.id)).scalars())


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database.from_url(db_url)
    metadata.create_all(database.engine)
    yield database
    database.dispose()


def make_loop(broker, namespace, db, publisher, **kwargs) -> ConsumerLoop:
    defaults: dict[str, Any] = {
        "name": "test",
        "bootstrap_servers": broker.bootstrap_servers,
        "group_id": kwargs.pop("group_id", unique("g")),
        "topics": [topics.ORDERS],
        "db": db,
        "publisher": publisher,
        "batch_handler": on_orders(record_orders),
        "namespace": namespace,
        "backoff_base": 0.01,
    }
    defaults.update(kwargs)
    return ConsumerLoop(**defaults)


@pytest.fixture
def publisher(broker, namespace):
    ensure_topics(
        broker.bootstrap_servers, [topics.ORDERS, topics.DEADLETTER], 3, namespace=namespace
    )
    pub = Publisher(broker.bootstrap_servers, namespace)
    yield pub
    pub.close()


def test_redelivered_event_is_processed_once(broker, namespace, db, publisher) -> None:
    event = order_event("o-1")
    publisher.publish_all([(topics.ORDERS, event.key, event.model_dump_json().encode())] * 3)
    publisher.send_event(topics.ORDERS, order_event("o-2")).get(10)
    loop = make_loop(broker, namespace, db, publisher)
    loop.start()
    try:
        wait_for(lambda: len(seen_ids(db)) >= 2, what="both orders")
        wait_for(lambda: loop.processed_count == 2, what="processed count")
    finally:
        loop.stop()
    assert sorted(seen_ids(db)) == ["o-1", "o-2"]


def test_the_lag_gauges_exist_at_zero_before_the_first_record(
    broker, namespace, db, publisher
) -> None:
    from shared import metrics

    name = unique("idle")
    loop = make_loop(broker, namespace, db, publisher, name=name)
    loop.start()

    def gauges() -> dict[str, float] | None:
        found = {
            s.labels["partition"]: s.value
            for family in metrics.CONSUMER_LAG.collect()
            for s in family.samples
            if s.labels["consumer"] == name
        }
        return found if len(found) == 3 else None

    try:
        lag = wait_for(gauges, timeout=60, what="a lag gauge per assigned partition")
    finally:
        loop.stop()
    assert loop.processed_count == 0 and lag == {"0": 0.0, "1": 0.0, "2": 0.0}


def test_poison_and_failing_records_go_to_dead_letter_others_pass(
    broker, namespace, db, publisher
) -> None:
    def picky(session: Session, messages: list[Inbound], deps: None) -> None:
        for message in messages:
            if message.event.data.order_id == "bad":
                raise ValueError("order 'bad' is not acceptable")
            record_orders(session, [message], deps)

    bad = order_event("bad").model_dump_json().encode()
    publisher.publish_all(
        [
            (topics.ORDERS, "c1", order_event("ok-1").model_dump_json().encode()),
            (topics.ORDERS, "c1", b"\xff\xfe not json"),
            (topics.ORDERS, "c1", bad),
            (topics.ORDERS, "c1", order_event("ok-2").model_dump_json().encode()),
        ]
    )
    loop = make_loop(broker, namespace, db, publisher, batch_handler=on_orders(picky))
    loop.start()
    try:
        wait_for(
            lambda: len(seen_ids(db)) == 2 and loop.deadlettered_count == 2,
            timeout=60,
            what="results",
        )
    finally:
        loop.stop()
    assert seen_ids(db) == ["ok-1", "ok-2"]
    letters = read_topic(broker.bootstrap_servers, namespace + topics.DEADLETTER, expect=2)
    by_error = {letter.data.error_type: letter.data for letter in letters}
    assert set(by_error) == {"PoisonMessage", "ValueError"}
    poison = by_error["PoisonMessage"]
    assert poison.origin_topic == namespace + topics.ORDERS
    # the record's size and digest, never its key or value (they may be personal data)
    assert poison.value_sha256 == hashlib.sha256(b"\xff\xfe not json").hexdigest()
    assert poison.value_bytes == len(b"\xff\xfe not json")
    assert poison.key_sha256 == hashlib.sha256(b"c1").hexdigest()
    assert poison.attempts == 1
    assert poison.value_shape is None  # not JSON: no shape
    failed = by_error["ValueError"]
    assert "not acceptable" in failed.error
    assert (failed.value_sha256, failed.value_bytes) == (hashlib.sha256(bad).hexdigest(), len(bad))
    assert failed.origin_offset >= 0
    for letter in letters:
        assert "value" not in letter.data.model_dump() and "key" not in letter.data.model_dump()


def test_transient_faults_are_retried_with_backoff(broker, namespace, db, publisher) -> None:
    failures = {"left": 2}

    def flaky(session: Session, messages: list[Inbound], deps: None) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("UPDATE", {}, Exception("database is locked"))
        record_orders(session, messages, deps)

    publisher.send_event(topics.ORDERS, order_event("o-flaky")).get(10)
    loop = make_loop(broker, namespace, db, publisher, batch_handler=on_orders(flaky))
    loop.start()
    try:
        wait_for(lambda: seen_ids(db) == ["o-flaky"], timeout=60, what="the flaky order")
    finally:
        loop.stop()
    assert failures["left"] == 0
    assert loop.deadlettered_count == 0


def test_offsets_are_committed_after_processing(broker, namespace, db, publisher) -> None:
    group = unique("g")
    for i in range(3):
        publisher.send_event(topics.ORDERS, order_event(f"first-{i}", f"c{i}")).get(10)
    loop = make_loop(broker, namespace, db, publisher, group_id=group)
    loop.start()
    wait_for(lambda: len(seen_ids(db)) == 3, what="first three")
    loop.stop()
    for i in range(2):
        publisher.send_event(topics.ORDERS, order_event(f"second-{i}", f"c{i}")).get(10)
    calls: list[str] = []

    def counting(session: Session, messages: list[Inbound], deps: None) -> None:
        calls.extend(m.event.data.order_id for m in messages)
        record_orders(session, messages, deps)

    loop = make_loop(
        broker, namespace, db, publisher, group_id=group, batch_handler=on_orders(counting)
    )
    loop.start()
    try:
        wait_for(lambda: len(seen_ids(db)) == 5, what="all five")
    finally:
        loop.stop()
    # the restarted member resumed after the committed offsets: no first-* again
    assert sorted(calls) == ["second-0", "second-1"]


def test_outbox_relay_publishes_in_order_and_empties(broker, namespace, db, publisher) -> None:
    with db.unit_of_work() as session:
        for i in range(5):
            add_to_outbox(session, topics.ORDERS, order_event(f"out-{i}", "same-customer"))
    relay = OutboxRelay("test", db, publisher)
    assert relay.relay_once() == 5
    assert relay.pending() == 0
    events = read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=5)
    assert [e.data.order_id for e in events] == [f"out-{i}" for i in range(5)]
    with db.sessions() as session:
        outbox = metadata.tables["outbox"]
        assert session.execute(select(func.count()).select_from(outbox)).scalar_one() == 0


def test_an_unpublishable_outbox_row_is_dropped_and_blocks_nothing(
    broker, namespace, db, publisher
) -> None:
    with db.unit_of_work() as session:
        add_to_outbox(session, topics.ORDERS, order_event("before", "c"))
        add_raw_to_outbox(session, [(topics.ORDERS, "c", b"x" * 2_000_000)])  # over 1 MiB
        add_to_outbox(session, topics.ORDERS, order_event("after", "c"))
    relay = OutboxRelay("test", db, publisher)
    assert relay.relay_once() == 3
    assert relay.pending() == 0
    events = read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=2)
    assert [e.data.order_id for e in events] == ["before", "after"]  # each once, in order


def test_a_dead_letter_carries_the_origin_size_and_digests_never_key_or_value() -> None:
    def letter(value: bytes, key: str | None = "k") -> Any:
        message = Inbound("crm.raw.orders.v1", 2, 41, key, value, "?", "d", None)
        return dead_letter_event(
            message,
            source="ingest",
            namespace="ns.",
            consumer_group="g",
            error="bad",
            error_type="X",
            attempts=1,
        )

    personal = '{"buyer": {"name": "张三", "mobile": "13800138000"}}'.encode()
    small = letter(personal, key="tb_zhangsan88")
    assert small.data.origin_topic == "ns.crm.raw.orders.v1"
    assert (small.data.origin_partition, small.data.origin_offset) == (2, 41)
    assert small.data.value_bytes == len(personal)
    assert small.data.value_sha256 == hashlib.sha256(personal).hexdigest()
    assert small.data.key_sha256 == hashlib.sha256(b"tb_zhangsan88").hexdigest()
    assert small.key == "crm.raw.orders.v1/2"  # keyed by origin, not by the record's key
    # what was sent, without its content: the field names and each value's type
    assert small.data.value_shape == {"buyer": {"name": "string(2)", "mobile": "string(11)"}}
    wire = encode_event(small)
    for value in (b"tb_zhangsan88", "张三".encode(), b"13800138000"):
        assert value not in wire
    assert letter(b"{}", key=None).data.key_sha256 is None

    binary = b"\xff" + bytes(range(256)) * 4000  # ~1 MB, not UTF-8
    big = letter(binary, key="k" * 1_000_000)
    assert big.data.value_bytes == len(binary)
    assert len(encode_event(big)) < 2048  # whatever the record's size


def test_key_hash_partitioner_assigns_as_kafkas_default() -> None:
    from kafka.partitioner import DefaultPartitioner

    from shared.bus import KeyHashPartitioner

    class Cluster:
        def __init__(self, partitions: set[int]) -> None:
            self.partitions = partitions

        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int] | None:
            return self.partitions if topic == "t" else None

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return self.partitions

    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    for partitions in ({0, 1, 2}, set(range(12)), {3, 1, 2, 0, 4}):
        cluster = Cluster(partitions)
        for i in range(2000):
            key = f"tb_customer{i}".encode()
            expected = default.partition("t", None, key, None, b"v", cluster)
            assert ours.partition("t", None, key, None, b"v", cluster) == expected
            assert ours.partition("t", None, key, None, b"v", cluster) == expected  # cached
    assert ours.partition("t", None, None, None, b"v", Cluster({0, 1})) in {0, 1}
    with pytest.raises(ValueError):  # an unknown topic, as the default partitioner says
        ours.partition("unknown", None, b"k", None, b"v", Cluster({0}))


def _file_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log, as they are on disk."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.parametrize("requested", [True, False])
def test_a_handler_can_have_the_wal_checkpointed_after_its_commit(
    broker, namespace, publisher, tmp_path: Path, requested: bool
) -> None:
    path = tmp_path / "erasing.db"
    db = Database.from_url(f"sqlite:///{path}")
    metadata.create_all(db.engine)
    secret = b"secret-order-7d1f0c"
    with db.unit_of_work() as session:
        session.execute(insert(seen).values(order_id=secret.decode()))
        session.execute(insert(seen).values(order_id="kept-order"))
    assert secret in _file_bytes(path)

    def erase(session: Session, messages: list[Inbound], deps: None) -> None:
        for message in messages:
            session.execute(delete(seen).where(seen.c.order_id == message.event.data.order_id))
            message.checkpoint_after_commit = requested

    publisher.send_event(topics.ORDERS, order_event(secret.decode())).get(10)
    loop = make_loop(broker, namespace, db, publisher, batch_handler=on_orders(erase))
    loop.start()
    try:
        wait_for(lambda: loop.processed_count == 1, what="the erasure")
    finally:
        loop.stop()  # the poll that handled it has ended
    try:
        assert seen_ids(db) == ["kept-order"]
        # secure_delete zeroes the row in the page written by the delete; the page's
        # older copy stays in the WAL until a checkpoint truncates it
        assert (secret in _file_bytes(path)) is not requested
        assert b"kept-order" in _file_bytes(path)
    finally:
        db.dispose()


def test_a_dead_letters_shape_has_types_and_lengths_never_values() -> None:
    from shared.bus_errors import SHAPE_MAX_ITEMS, value_shape

    record = {
        "order_id": "o-1",
        "total_amount": "13912873465x",
        "paid": True,
        "discount": None,
        "quantity": 3,
        "items": [{"sku": "A"}] * (SHAPE_MAX_ITEMS + 2),
        "deep": {"a": {"b": {"c": {"d": {"e": {"f": "13912873465"}}}}}},
    }
    shape = value_shape(orjson.dumps(record))
    assert "13912873465" not in orjson.dumps(shape).decode()
    assert shape["total_amount"] == "string(12)" and shape["order_id"] == "string(3)"
    assert (shape["paid"], shape["discount"], shape["quantity"]) == ("boolean", "null", "number")
    assert shape["items"][:SHAPE_MAX_ITEMS] == [{"sku": "string(1)"}] * SHAPE_MAX_ITEMS
    assert shape["items"][-1] == "2 more items"
    assert shape["deep"]["a"]["b"]["c"]["d"]["e"] == "object(1 keys)"
    assert value_shape(b"\xff not json") is None
    assert value_shape(b'"13912873465"') == "string(11)"


class _SlowRecorder:
    """A publisher that records what it is given and takes its time (as a broker round
    trip does), so two relays' passes overlap."""

    def __init__(self, seen: list[bytes]) -> None:
        self.seen = seen

    def publish_all(self, records: Any) -> None:
        batch = [value for _, _, value in records]
        time.sleep(0.02)
        self.seen.extend(batch)


def test_two_relays_on_one_database_publish_each_row_once(db_url: str) -> None:
    """The API and the consumers of a service in two processes (``CRM_RUN_LAYOUT=api-apart``)
    each run a relay over the same outbox: a row goes out once (SQLite: a file lock around
    each pass; PostgreSQL: SKIP LOCKED)."""
    import threading

    from shared.outbox import add_raw_to_outbox

    first, second = Database.from_url(db_url), Database.from_url(db_url)
    metadata.create_all(first.engine)
    rows = [(topics.ORDERS, f"k{i}", f"v{i}".encode()) for i in range(600)]
    with first.unit_of_work() as session:
        add_raw_to_outbox(session, rows)
    seen: list[bytes] = []
    relays = [
        OutboxRelay(name, db, _SlowRecorder(seen), batch_size=50)  # type: ignore[arg-type]
        for name, db in (("api", first), ("consumers", second))
    ]
    start = threading.Barrier(2)

    def drain(relay: OutboxRelay) -> None:
        start.wait()
        while relay.relay_once():
            pass

    threads = [threading.Thread(target=drain, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert sorted(seen) == sorted(value for _, _, value in rows)  # each once, none lost
        assert relays[0].pending() == 0
    finally:
        first.dispose()
        second.dispose()
