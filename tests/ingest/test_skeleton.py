from __future__ import annotations

from pathlib import Path

import pytest

from devtools.testing import read_topic
from services.ingest.app import create_app
from services.ingest.config import Settings
from shared import topics
from tests.conftest import ADMIN_KEY, api_client

ORDER = {
    "order_id": "T1",
    "customer_id": "c-1",
    "status": "paid",
    "created_at": "2026-11-01T10:00:00+08:00",
    "currency": "CNY",
    "total_amount": "199.00",
}


@pytest.mark.kafka
def test_posted_order_reaches_orders_topic(broker, namespace, db_url, tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        run_consumer=False,
    )
    with api_client(create_app(settings)) as client:
        response = client.post("/v1/orders", json=ORDER, headers={"X-API-Key": ADMIN_KEY})
        assert response.status_code == 202, response.text
        events = read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=1)
    assert len(events) == 1
    assert events[0].data.order_id == "T1"
    assert str(events[0].data.total_amount) == "199.00"


def test_missing_api_key_is_a_problem(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=sqlite_url,
        api_key=ADMIN_KEY,
        run_consumer=False,
    )
    with api_client(create_app(settings)) as client:
        response = client.post("/v1/orders", json=ORDER)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unauthorized")
