"""Through the real broker: orders in on crm.orders.v1, scores out on the API and crm.segments.v1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from devtools.testing import read_topic, unique, wait_for
from services.segment import rescoring
from services.segment.app import create_app
from services.segment.config import Settings
from shared import topics
from shared.bus import Publisher
from shared.erasure import tombstone_key
from shared.events import Order, OrderRecordedEvent, OrderStatus, SegmentChangedEvent
from tests.conftest import ADMIN_KEY, api_client
from tests.segment.helpers import NOW, erased, order
from tests.segment.test_paths import history, stored_state

HEADERS = {"X-API-Key": ADMIN_KEY}
pytestmark = pytest.mark.kafka


def _settings(broker, namespace: str, db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        consumer_group=unique("g"),
        run_consumer=True,
    )


def test_orders_become_scores_and_segment_events(broker, namespace, db_url, tmp_path) -> None:
    app = create_app(_settings(broker, namespace, db_url, tmp_path))
    app.state.runtime.clock = lambda: NOW
    publisher = Publisher(broker.bootstrap_servers, namespace)
    paid = order("T1", "c-1", days_ago=5, amount="199.00")
    refunded_later = order("T2", "c-1", days_ago=4, amount="50.00")
    refunded = refunded_later.model_copy(
        update={
            "status": OrderStatus.refunded,
            "updated_at": refunded_later.updated_at.replace(hour=23),
        }
    )
    events = [
        OrderRecordedEvent(source="test", key="c-1", data=paid),
        # the refund arrives before the payment it reverses, and the payment twice
        OrderRecordedEvent(source="test", key="c-1", data=refunded),
        OrderRecordedEvent(source="test", key="c-1", data=refunded_later),
    ]
    duplicate = events[0]
    with api_client(app) as client:
        publisher.publish_all(
            [(topics.ORDERS, e.key, e.model_dump_json(by_alias=True).encode()) for e in events]
            + [(topics.ORDERS, duplicate.key, duplicate.model_dump_json(by_alias=True).encode())]
        )

        def scores() -> dict | None:
            r = client.get("/v1/customers/c-1/scores", headers=HEADERS)
            return r.json() if r.status_code == 200 and r.json()["frequency"] == 1 else None

        body = wait_for(scores, timeout=30, what="scores for c-1")
        assert body["monetary"] == "199.00"
        assert body["frequency"] == 1
        assert body["recency_days"] == 5
        assert body["lifecycle_stage"] == "new"
        assert body["rfm_segment"] and body["rfm_code"]
        assert body["policy_version"] == 1

        changes = read_topic(
            broker.bootstrap_servers, namespace + topics.SEGMENTS, expect=1, timeout=15
        )
        assert all(isinstance(e, SegmentChangedEvent) for e in changes)
        final = [e for e in changes if e.data.customer_id == "c-1"][-1]
        assert final.data.current is not None
        assert str(final.data.current.monetary) == body["monetary"]

        missing = client.get("/v1/customers/nobody/scores", headers=HEADERS)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"

        erasure = erased("c-1")
        publisher.publish_all(
            [(topics.PROFILES, "c-1", erasure.event.model_dump_json(by_alias=True).encode())]
        )
        wait_for(
            lambda: client.get("/v1/customers/c-1/scores", headers=HEADERS).status_code == 404,
            timeout=20,
            what="the erased customer to disappear",
        )
        removed = read_topic(
            broker.bootstrap_servers,
            namespace + topics.SEGMENTS,
            expect=1,
            timeout=15,
            predicate=lambda e: e.data.removed,
        )
        assert removed and removed[0].data.customer_id == "c-1"
    publisher.close()


def test_replaying_the_orders_topic_into_an_empty_database_gives_identical_scores(
    broker, namespace, tmp_path
) -> None:
    events, _ = history(seed=5, customers=40)
    publisher = Publisher(broker.bootstrap_servers, namespace)
    publisher.publish_all(
        (
            topics.ORDERS,
            o.customer_id,
            OrderRecordedEvent(source="test", key=o.customer_id, data=o)
            .model_dump_json(by_alias=True)
            .encode(),
        )
        for o in events
    )
    publisher.close()
    states = []
    for name in ("first", "replay"):
        settings = _settings(broker, namespace, f"sqlite:///{tmp_path / name}.db", tmp_path)
        settings = settings.model_copy(update={"rescore_at_start": False})
        app = create_app(settings)
        runtime = app.state.runtime
        runtime.clock = lambda: NOW
        with api_client(app):
            wait_for(
                lambda runtime=runtime: (
                    runtime.consumers and runtime.consumers[0].processed_count >= len(events)
                ),
                timeout=60,
                what=f"the {name} consumer to read every order version",
            )
            with runtime.db.unit_of_work() as session:
                rescoring.rescore_all(session, NOW)
            states.append(stored_state(runtime.db))
    assert len(states[0]) > 20
    pd.testing.assert_frame_equal(states[0], states[1])


def test_an_erasure_leaves_no_copy_of_the_customers_orders_in_the_sqlite_files(
    broker, namespace, sqlite_url, tmp_path
) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    settings = _settings(broker, namespace, sqlite_url, tmp_path)
    app = create_app(settings.model_copy(update={"rescore_at_start": False}))
    app.state.runtime.clock = lambda: NOW
    # what segment keeps of a customer's orders: their ids, the shipping region, the
    # channel and the categories, each value unique to the customer here; and the customer
    # id (the erasure's tombstone keeps only its digest)
    mine = [
        Order.model_validate(
            {
                **order(f"ORD-ERASE-{i}", "c-erase", days_ago=3 + i).model_dump(),
                "channel": "wx-mini-erase",
                "items": [{"sku": "S", "category": "cat-erase", "unit_price": "9.00"}],
                "shipping": {"province": "省份-抹除", "city": "城市-抹除"},
            }
        )
        for i in range(2)
    ]
    theirs = order("ORD-KEEP-1", "c-keep", days_ago=2, channel="wx-mini-keep", province="省份-保留")
    needles = [b"ORD-ERASE-0", b"ORD-ERASE-1", b"wx-mini-erase", b"cat-erase"]
    needles += ["省份-抹除".encode(), "城市-抹除".encode()]
    kept = [b"ORD-KEEP-1", b"wx-mini-keep", "省份-保留".encode()]

    def found(values: list[bytes]) -> list[bytes]:
        files = [path, path.with_name(path.name + "-wal")]
        data = b"".join(f.read_bytes() for f in files if f.exists())
        return [v for v in values if v in data]

    runtime = app.state.runtime

    def publish(orders: list[Order]) -> None:
        publisher.publish_all(
            (
                topics.ORDERS,
                o.customer_id,
                OrderRecordedEvent(source="test", key=o.customer_id, data=o)
                .model_dump_json(by_alias=True)
                .encode(),
            )
            for o in orders
        )

    publisher = Publisher(broker.bootstrap_servers, namespace)
    with api_client(app) as client:
        publish([*mine, theirs])
        for customer in ("c-erase", "c-keep"):
            wait_for(
                lambda c=customer: (
                    client.get(f"/v1/customers/{c}/scores", headers=HEADERS).status_code == 200
                ),
                timeout=30,
                what=f"scores of {customer}",
            )
        assert found(needles) == needles  # what the scan looks for is there to be found
        assert found([b"c-erase"]) == [b"c-erase"]
        erasure = erased("c-erase")
        publisher.publish_all(
            [(topics.PROFILES, "c-erase", erasure.event.model_dump_json(by_alias=True).encode())]
        )
        wait_for(
            lambda: client.get("/v1/customers/c-erase/scores", headers=HEADERS).status_code == 404,
            timeout=20,
            what="the erased customer to disappear",
        )
        # while the service runs (closing the last connection would checkpoint anyway)
        wait_for(lambda: found(needles) == [], timeout=10, what="no copy of the erased orders")
        assert found(kept) == kept
        # the removal event names the customer, as it must: once relayed and deleted, the
        # relay checkpoints (the loop asked it to after the erasure's batch)
        wait_for(lambda: runtime.relay.pending() == 0, timeout=20, what="the outbox relayed")
        with runtime.db.sessions() as session:
            assert [t for t in _tables(session) if _holds(session, t, "c-erase")] == []
            tombstones = session.execute(text("SELECT customer_hash FROM erased_customers"))
            assert tombstones.scalars().all() == [tombstone_key("c-erase")]
        wait_for(lambda: found([b"c-erase"]) == [], timeout=10, what="no byte of the id left")

        # the erased customer's orders delivered again (a replay) bring nothing back
        done = runtime.consumers[0].processed_count
        publish(mine)
        wait_for(
            lambda: runtime.consumers[0].processed_count >= done + len(mine),
            timeout=30,
            what="the replayed orders consumed",
        )
        assert client.get("/v1/customers/c-erase/scores", headers=HEADERS).status_code == 404
    publisher.close()


def _tables(session: Session) -> list[str]:
    names = session.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
    return list(names.scalars())


def _holds(session: Session, table: str, value: str) -> bool:
    return any(
        value in repr(tuple(row)) for row in session.execute(text(f'SELECT * FROM "{table}"'))
    )
