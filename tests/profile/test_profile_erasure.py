"""Erasure through the real broker: profile's SQLite files keep no copy of the customer id
(its tombstone holds a digest), and the customer's events delivered again stay out."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from devtools.testing import unique, wait_for
from services.profile.app import create_app
from services.profile.config import Settings
from shared import topics
from shared.bus import Publisher
from shared.erasure import tombstone_key
from tests.conftest import ADMIN_KEY, api_client
from tests.profile.profile_factories import order

pytestmark = pytest.mark.kafka
HEADERS = {"X-API-Key": ADMIN_KEY}


def _in_files(path: Path, needle: bytes) -> list[str]:
    """Which of the database file and its write-ahead log hold ``needle``."""
    files = [path, path.with_name(path.name + "-wal")]
    return [f.name for f in files if f.exists() and needle in f.read_bytes()]


def test_an_erased_customer_id_leaves_the_sqlite_files_and_stays_erased(
    broker: Any, namespace: str, sqlite_url: str, tmp_path: Path
) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    customer = unique("tb_zhangsan")
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=sqlite_url,
        api_key=ADMIN_KEY,
        consumer_group=unique("g"),
        run_consumer=True,
    )
    app = create_app(settings)
    runtime = app.state.runtime
    events = [
        order(customer, "o-1", "paid", buyer={"name": "张三", "mobile": "13800138000"}),
        order(customer, "o-2", "paid", minutes=5),
        # enough orders that the export document spills over several pages (overflow
        # pages: secure_delete=FAST leaves those unzeroed)
        *(order(customer, f"o-{n}", "paid", minutes=5 + n) for n in range(3, 40)),
    ]

    def publish(batch: list[Any]) -> None:
        publisher.publish_all(
            [(topics.ORDERS, e.key, e.model_dump_json(by_alias=True).encode()) for e in batch]
        )

    publisher = Publisher(broker.bootstrap_servers, namespace)
    with api_client(app) as client:
        publish(events)
        wait_for(
            lambda: (
                client.get(f"/v1/customers/{customer}", headers=HEADERS).status_code == 200
                and runtime.consumers[0].processed_count >= len(events)
            ),
            timeout=30,
            what="the customer's profile",
        )
        # a subject-access export of the customer: its document goes with the erasure too
        exported = client.post(f"/v1/customers/{customer}/exports", headers=HEADERS)
        assert exported.status_code == 202, exported.text
        assert len(exported.content) > 8192
        runtime.db.checkpoint()
        assert _in_files(path, customer.encode())  # the scan finds the id where it is
        assert path.name in _in_files(path, "张三".encode())
        response = client.delete(f"/v1/customers/{customer}", headers=HEADERS)
        assert response.status_code == 200, response.text
        # the erasure event (which names the customer, as it must) goes out and is deleted
        wait_for(lambda: runtime.relay.pending() == 0, timeout=20, what="the outbox relayed")
        with runtime.db.sessions() as session:
            assert _tables_holding(session, customer) == []
            tombstones = session.execute(text("SELECT customer_hash FROM tombstones")).scalars()
            assert list(tombstones) == [tombstone_key(customer)]
        # the relay checkpoints once the erasure event is published and deleted: no byte left
        wait_for(
            lambda: _in_files(path, customer.encode()) == [],
            timeout=10,
            what="no byte of the erased customer id in the files",
        )
        assert _in_files(path, "张三".encode()) == []  # nor of the name (profile, export)

        # the same events delivered again (fresh event ids, as a replay) bring nothing back
        done = runtime.consumers[0].processed_count
        publish([e.model_copy(update={"event_id": uuid.uuid4()}) for e in events])
        wait_for(
            lambda: runtime.consumers[0].processed_count >= done + len(events),
            timeout=30,
            what="the replayed events consumed",
        )
        assert client.get(f"/v1/customers/{customer}", headers=HEADERS).status_code == 404
    publisher.close()


def _tables_holding(session: Session, value: str) -> list[str]:
    """The tables with a row that holds ``value`` anywhere in it."""
    names = session.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars()
    return [
        name
        for name in list(names)
        if any(
            value in repr(tuple(row)) for row in session.execute(text(f'SELECT * FROM "{name}"'))
        )
    ]
