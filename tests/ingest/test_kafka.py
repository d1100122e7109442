"""The Kafka path: raw topics with the REST rules, dead letters, and delivery across a broker
restart (the outbox keeps accepting; an emptied broker gets the store replayed)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from devtools.broker import EmbeddedBroker, free_port
from devtools.testing import read_topic, unique, wait_for
from services.ingest.app import create_app, create_runtime
from services.ingest.cli import replay_command
from services.ingest.config import Settings
from services.ingest.models import StoredEvent
from shared import topics
from shared.bus import Publisher
from shared.events import decode_event, encode_event
from tests.conftest import ADMIN_KEY, api_client

pytestmark = pytest.mark.kafka

HEADERS = {"X-API-Key": ADMIN_KEY}


def settings_for(
    bootstrap: str, namespace: str, tmp_path: Path, db_url: str, run_consumer: bool = False
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        consumer_group=unique("g"),
        run_consumer=run_consumer,
        epoch_check_interval=1.0,
    )


def order(order_id: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": f"cust-{order_id}",
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "88.00",
        "buyer": {"name": "赵六", "mobile": "13800138000"},
    }
    base.update(changes)
    return base


def test_raw_topics_are_validated_like_rest_and_bad_records_dead_lettered(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, db_url: str
) -> None:
    settings = settings_for(broker.bootstrap_servers, namespace, tmp_path, db_url, True)
    producer = Publisher(broker.bootstrap_servers, namespace)
    good_order = orjson.dumps(order("K1", shipping={"province": "浙江", "city": "杭州"}))
    records = [
        # the three K1 records share a key, so they arrive in this order (one partition)
        (topics.RAW_ORDERS, "cust-K1", good_order),
        (topics.RAW_ORDERS, "cust-K1", good_order),  # the same version again: a duplicate
        # the same version with other content: dead-lettered as a version conflict
        (
            topics.RAW_ORDERS,
            "cust-K1",
            orjson.dumps(order("K1", shipping={"province": "浙江"}, total_amount="5.00")),
        ),
        (topics.RAW_ORDERS, None, b"{not json"),
        (topics.RAW_ORDERS, None, good_order[:-1] + b',"total_amount":"1.00"}'),  # key twice
        (topics.RAW_ORDERS, None, b"\xff\xfe\x00bad utf-8"),
        (topics.RAW_ORDERS, None, orjson.dumps(order("K2", total_amount="NaN"))),
        (topics.RAW_ORDERS, None, orjson.dumps({"order_id": "K3"})),
        (
            topics.RAW_CUSTOMERS,
            None,
            orjson.dumps({"customer_id": "c-1", "mobile": "+86 139-0013-9000"}),
        ),
        (topics.RAW_CUSTOMERS, None, orjson.dumps({"customer_id": "c-2", "mobile": "12"})),
        (topics.RAW_CUSTOMERS, None, b"[1, 2]"),
        (
            topics.RAW_INTERACTIONS,
            None,
            orjson.dumps(
                {
                    "interaction_id": "i-1",
                    "customer_id": "c-1",
                    "kind": "complaint",
                    "text": "慢",
                    "occurred_at": "2026-11-05T08:00:00+08:00",
                }
            ),
        ),
        (
            topics.RAW_INTERACTIONS,
            None,
            orjson.dumps(
                {
                    "interaction_id": "i-2",
                    "customer_id": "c-1",
                    "kind": "review",
                    "occurred_at": "2026-11-05T08:00:00+08:00",
                }
            ),
        ),
    ]
    with api_client(create_app(settings)) as client:
        producer.publish_all(records)
        dead = read_topic(
            broker.bootstrap_servers, namespace + topics.DEADLETTER, expect=8, timeout=30
        )
        orders = read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=1)
        customers = read_topic(broker.bootstrap_servers, namespace + topics.CUSTOMERS, expect=2)
        interactions = read_topic(
            broker.bootstrap_servers, namespace + topics.INTERACTIONS, expect=1
        )
        stats = client.get("/v1/stats?windows=1h", headers=HEADERS).json()["windows"]["1h"]
    producer.close()

    assert [e.data.order_id for e in orders] == ["K1"]
    assert orders[0].data.shipping.province == "浙江省"
    assert orders[0].source == "ingest/kafka"
    # an invalid mobile is dropped from the record (a warning), not the record
    assert sorted((e.data.customer_id, e.data.mobiles) for e in customers) == [
        ("c-1", ["+8613900139000"]),
        ("c-2", []),
    ]
    assert stats["warnings_by_code"] == {"phone.invalid": 1}
    assert [e.data.interaction_id for e in interactions] == ["i-1"]

    by_topic: dict[str, list[str]] = defaultdict(list)
    for event in dead:
        letter = event.data
        assert event.source == "ingest-raw"  # one source, whichever step rejected it
        assert letter.origin_topic.startswith(namespace)
        assert letter.origin_offset >= 0
        by_topic[letter.origin_topic[len(namespace) :]].append(letter.error)
    assert len(by_topic[topics.RAW_ORDERS]) == 6
    assert len(by_topic[topics.RAW_CUSTOMERS]) == 1
    assert len(by_topic[topics.RAW_INTERACTIONS]) == 1
    joined = " | ".join(by_topic[topics.RAW_ORDERS])
    for code in (
        "record.not_json",
        "record.not_utf8",
        "money.not_finite",
        "required",
        "version-conflict",
        "json.duplicate_key",
    ):
        assert code in joined
    assert "record.not_object" in " ".join(by_topic[topics.RAW_CUSTOMERS])
    assert "rating" in by_topic[topics.RAW_INTERACTIONS][0]
    # the dead letter carries the record's size and digest, never the record; the reason
    # never quotes a value
    not_utf8 = next(e.data for e in dead if "not_utf8" in e.data.error)
    assert not_utf8.value_bytes > 0 and len(not_utf8.value_sha256) == 64
    assert all("13800138000" not in e.data.error for e in dead)
    kafka = stats["by_source"]["kafka"]
    assert (kafka["accepted"], kafka["duplicate"], kafka["rejected"]) == (4, 1, 8)
    assert kafka["reasons"]["warning:phone.invalid"] == 1


def test_broker_down_keeps_accepting_and_every_order_arrives_once(
    namespace: str, tmp_path: Path, db_url: str
) -> None:
    """Own broker: stop it, keep posting, start an empty one on the same port."""
    port = free_port()
    first = EmbeddedBroker(port=port, log_path=tmp_path / "b1.log").start()
    second: EmbeddedBroker | None = None
    settings = settings_for(first.bootstrap_servers, namespace, tmp_path, db_url)
    topic = namespace + topics.ORDERS
    accepted: dict[str, str] = {}
    try:
        with api_client(create_app(settings)) as client:

            def post(order_id: str) -> None:
                response = client.post("/v1/orders", json=order(order_id), headers=HEADERS)
                assert response.status_code == 202, response.text
                accepted[order_id] = response.json()["event_id"]

            for i in range(5):
                post(f"A{i}")
            read_topic(first.bootstrap_servers, topic, expect=5)
            first.stop()
            for i in range(5):
                post(f"D{i}")  # broker down: still stored and answered 202
            batch = client.post(
                "/v1/orders/batch", json=[order(f"D{i}") for i in range(5, 20)], headers=HEADERS
            )
            assert batch.json()["accepted"] == 15
            for item in batch.json()["results"]:
                accepted[item["id"]] = item["event_id"]
            second = EmbeddedBroker(port=port, log_path=tmp_path / "b2.log").start()

            def delivered() -> dict[str, set[str]] | None:
                seen: dict[str, set[str]] = defaultdict(set)
                try:
                    events = read_topic(second.bootstrap_servers, topic, timeout=3)
                except ValueError:  # the topic is not there yet
                    return None
                for event in events:
                    seen[event.data.order_id].add(str(event.event_id))
                return seen if set(seen) == set(accepted) else None

            seen = wait_for(delivered, timeout=60, interval=1, what="all orders on the new broker")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert len(accepted) == 25
    # exactly once in effect: each order arrives as the one event its 202 named
    assert {order_id: ids for order_id, ids in seen.items()} == {
        order_id: {event_id} for order_id, event_id in accepted.items()
    }


def test_replay_command_publishes_a_range(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, sqlite_url: str, capsys: Any
) -> None:
    settings = settings_for(broker.bootstrap_servers, namespace, tmp_path, sqlite_url)
    with api_client(create_app(settings)) as client:
        client.post("/v1/orders/batch", json=[order(f"C{i}") for i in range(6)], headers=HEADERS)
        read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=6)
    runtime = create_runtime(settings)
    try:
        assert replay_command(runtime, ["--from-seq", "3", "--to-seq", "4"]) == 0
        assert replay_command(runtime, ["--since", "2000-01-01T00:00:00+00:00"]) == 0
        with runtime.db.sessions() as session:
            assert session.execute(select(func.count()).select_from(StoredEvent)).scalar_one() == 6
    finally:
        runtime.db.dispose()
    out = capsys.readouterr().out
    assert "queued 2 events" in out and "queued 6 events" in out
    events = read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=14)
    counts = Counter(e.data.order_id for e in events)
    assert counts == {"C0": 2, "C1": 2, "C2": 3, "C3": 3, "C4": 2, "C5": 2}
    assert len({e.event_id for e in events}) == 6  # the same events again


def test_restarted_service_replays_into_an_emptied_broker(
    namespace: str, tmp_path: Path, sqlite_url: str
) -> None:
    """`make run` restarted: a new empty embedded broker, the same ingest database."""
    port = free_port()
    with EmbeddedBroker(port=port) as first:
        settings = settings_for(first.bootstrap_servers, namespace, tmp_path, sqlite_url)
        with api_client(create_app(settings)) as client:
            client.post(
                "/v1/orders/batch", json=[order(f"M{i}") for i in range(10)], headers=HEADERS
            )
            read_topic(first.bootstrap_servers, namespace + topics.ORDERS, expect=10)
    with EmbeddedBroker(port=port) as second:
        with api_client(create_app(settings)):
            events = read_topic(
                second.bootstrap_servers, namespace + topics.ORDERS, expect=10, timeout=30
            )
            assert sorted(e.data.order_id for e in events) == [f"M{i}" for i in range(10)]
        # restarted against a broker that kept everything: nothing is replayed
        with api_client(create_app(settings)) as client:
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            wait_for(lambda: runtime.relay._verified, timeout=30, what="epoch verified")
            guard = runtime.epoch_guard
            assert guard.check() is False
            assert guard.replays == 0
        again = read_topic(second.bootstrap_servers, namespace + topics.ORDERS, timeout=3)
        assert len(again) == 10


def test_an_erased_profile_leaves_the_event_store(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, sqlite_url: str
) -> None:
    from shared.events import ProfileErasedEvent, ProfileErasedPayload, utcnow

    settings = settings_for(broker.bootstrap_servers, namespace, tmp_path, sqlite_url, True)
    with api_client(create_app(settings)) as client:
        client.post("/v1/orders", json=order("G1", customer_id="c-gone"), headers=HEADERS)
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        erased = ProfileErasedEvent(
            source="profile",
            key="c-gone",
            data=ProfileErasedPayload(
                customer_id="c-gone", erasure_id="er-1", requested_at=utcnow()
            ),
        )
        producer = Publisher(broker.bootstrap_servers, namespace)
        producer.publish_all([(topics.PROFILES, erased.key, encode_event(erased))])
        producer.close()

        def scrubbed() -> bool:
            with runtime.db.sessions() as session:
                envelope = session.execute(select(StoredEvent.envelope)).scalar_one()
            return decode_event(envelope).data.buyer is None

        wait_for(scrubbed, timeout=30, what="the stored order to lose its buyer")


def test_a_topic_that_starts_over_is_not_mistaken_for_records_already_seen(
    tmp_path: Path,
) -> None:
    """Raw records are deduplicated by position and broker timestamp: a redelivery is
    skipped, but a record at a reused offset (an emptied broker, a recreated topic) is new."""
    from kafka.consumer.fetcher import ConsumerRecord

    from services.ingest.consumer import build_consumers

    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'ingest.db'}",
        api_key=ADMIN_KEY,
    )
    runtime = create_runtime(settings)
    runtime.migrate()
    loop = build_consumers(runtime)[0]

    def record(order_id: str, timestamp: int) -> Any:
        value = orjson.dumps({**order(order_id), "customer_id": "c-restart"})
        return ConsumerRecord(
            topics.RAW_ORDERS,
            0,
            0,
            7,
            timestamp,
            0,
            b"c-restart",
            value,
            [],
            None,
            9,
            len(value),
            -1,
        )

    def consume(raw: Any) -> None:
        with runtime.db.unit_of_work() as session:
            loop._handle_batch(session, [loop._decode(raw)])

    def stored() -> list[str]:
        with runtime.db.sessions() as session:
            return sorted(session.scalars(select(StoredEvent.entity_id)))

    try:
        consume(record("before", 1_700_000_000_000))
        consume(record("before", 1_700_000_000_000))  # redelivered: skipped
        assert stored() == ["before"]
        assert loop.processed_count == 1
        consume(record("after", 1_700_000_500_000))  # offset 7 again, on a fresh topic
        assert stored() == ["after", "before"]
    finally:
        runtime.db.dispose()
