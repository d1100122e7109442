"""The REST API: single records, batches, limits, idempotency, statistics, replay, docs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from devtools.broker import EmbeddedBroker, free_port
from devtools.testing import read_topic, unique, wait_for
from services.ingest.app import create_app
from services.ingest.config import Settings
from services.ingest.models import StoredEvent
from shared import topics
from tests.conftest import ADMIN_KEY, api_client

pytestmark = pytest.mark.kafka

HEADERS = {"X-API-Key": ADMIN_KEY}
JSON_HEADERS = {**HEADERS, "content-type": "application/json"}


def order(order_id: str = "T1", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": "c-1",
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "199.00",
        "buyer": {"name": "张三", "mobile": "138 0013 8000"},
        "shipping": {"province": "浙江", "city": "杭州"},
    }
    base.update(changes)
    return base


def settings_for(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, db_url: str, **extra: Any
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        api_keys={"reader": ["ingest:read"], "writer": ["ingest:write"]},
        consumer_group=unique("g"),
        run_consumer=False,
        **extra,
    )


@pytest.fixture
def client(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, sqlite_url: str
) -> Iterator[TestClient]:
    with api_client(create_app(settings_for(broker, namespace, tmp_path, sqlite_url))) as c:
        yield c


def test_single_order_is_normalised_and_published(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, db_url: str
) -> None:
    with api_client(create_app(settings_for(broker, namespace, tmp_path, db_url))) as client:
        first = client.post("/v1/orders", json=order(), headers=HEADERS)
        assert first.status_code == 202, first.text
        body = first.json()
        assert body["order_id"] == "T1" and body["status"] == "accepted"
        assert body["current"] is True and body["sequence"] == 1
        again = client.post("/v1/orders", json=order(), headers=HEADERS)
        assert again.status_code == 202
        assert again.json()["status"] == "duplicate"
        newer = client.post(
            "/v1/orders",
            json=order(status="shipped", updated_at="2026-11-02T10:00:00+08:00"),
            headers=HEADERS,
        )
        assert newer.json()["current"] is True
        events = read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=2)
    assert [e.data.status.value for e in events] == ["paid", "shipped"]
    data = events[0].data
    assert events[0].type == "order.recorded" and events[0].key == "c-1"
    assert data.buyer.mobile == "+8613800138000"
    assert (data.shipping.province, data.shipping.city) == ("浙江省", "杭州市")
    assert str(data.total_amount) == "199.00"
    assert {e.event_id for e in events} == {
        __import__("uuid").UUID(first.json()["event_id"]),
        __import__("uuid").UUID(newer.json()["event_id"]),
    }


def test_rejections_are_problem_json_with_every_reason(client: TestClient) -> None:
    bad = order(total_amount="12.345", currency="CNY", created_at="soon")
    response = client.post("/v1/orders", json=bad, headers=HEADERS)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/validation-error")
    assert {(e["field"], e["code"]) for e in problem["errors"]} == {
        ("total_amount", "money.scale"),
        ("created_at", "time.format"),
    }
    surrogate = b'{"order_id": "T\\udc00", "customer_id": "c", "status": "paid"}'
    response = client.post(
        "/v1/orders",
        content=surrogate,
        headers={**HEADERS, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert ("order_id", "text.surrogate") in {
        (e["field"], e["code"]) for e in response.json()["errors"]
    }
    response = client.post("/v1/orders", content=b"{nope", headers=JSON_HEADERS)
    assert response.status_code == 422
    assert response.json()["type"].endswith("/malformed-json")
    # a whole-body problem is listed like any other
    assert [e["code"] for e in response.json()["errors"]] == ["malformed-json"]
    deep = b'{"order_id": "deep", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for path in ("/v1/orders", "/v1/orders/batch", "/v1/interactions"):
        response = client.post(path, content=deep, headers=JSON_HEADERS)
        assert response.status_code == 422, path
        assert response.json()["type"].endswith("/malformed-json")


def test_a_bad_contact_field_is_dropped_with_a_warning_single_batch_and_stats(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, db_url: str
) -> None:
    with api_client(create_app(settings_for(broker, namespace, tmp_path, db_url))) as client:
        single = client.post(
            "/v1/orders",
            json=order(order_id="W1", buyer={"name": "张三", "mobile": "123"}),
            headers=HEADERS,
        )
        assert single.status_code == 202, single.text
        assert single.json()["status"] == "accepted"
        assert [(w["field"], w["code"]) for w in single.json()["warnings"]] == [
            ("buyer.mobile", "phone.invalid")
        ]
        batch = client.post(
            "/v1/orders/batch",
            json={
                "orders": [
                    order(order_id="W2", buyer={"email": "nope"}),
                    order(order_id="W3"),
                    order(order_id="W4", created_at="soon"),
                ]
            },
            headers=HEADERS,
        )
        body = batch.json()
        assert (body["accepted"], body["rejected"]) == (2, 1)
        assert [(w["field"], w["code"]) for w in body["results"][0]["warnings"]] == [
            ("buyer.email", "email.invalid")
        ]
        assert body["results"][1]["warnings"] == []
        stats = client.get("/v1/stats?windows=1h", headers=HEADERS).json()["windows"]["1h"]
        assert stats["accepted"] == 3
        assert stats["warnings_by_code"] == {"phone.invalid": 1, "email.invalid": 1}
        events = read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=3)
    published = {e.data.order_id: e.data for e in events}
    assert published["W1"].buyer.mobile is None and published["W1"].buyer.name is not None
    assert str(published["W2"].total_amount) == "199.00"


def test_the_same_order_version_with_other_content_is_a_version_conflict(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, db_url: str
) -> None:
    with api_client(create_app(settings_for(broker, namespace, tmp_path, db_url))) as client:
        assert client.post("/v1/orders", json=order("V1"), headers=HEADERS).status_code == 202
        same = client.post("/v1/orders", json=order("V1"), headers=HEADERS)
        assert same.status_code == 202 and same.json()["status"] == "duplicate"
        changed = client.post("/v1/orders", json=order("V1", total_amount="1.00"), headers=HEADERS)
        assert changed.status_code == 409
        assert changed.json()["type"].endswith("/version-conflict")
        assert changed.json()["errors"][0]["code"] == "version-conflict"
        # in a batch: a conflict with the stored version and one within the batch
        batch = client.post(
            "/v1/orders/batch",
            json=[
                order("V1", total_amount="2.00"),
                order("V2"),
                order("V2", total_amount="3.00"),
                order("V2"),
            ],
            headers=HEADERS,
        ).json()
        assert [r["status"] for r in batch["results"]] == [
            "rejected",
            "accepted",
            "rejected",
            "duplicate",
        ]
        assert batch["results"][0]["reasons"][0]["code"] == "version-conflict"
        # a later updated_at is the way to change it
        later = order("V1", total_amount="1.00", updated_at="2026-11-03T10:00:00+08:00")
        assert client.post("/v1/orders", json=later, headers=HEADERS).json()["current"] is True
        stats = client.get("/v1/stats?windows=1h", headers=HEADERS).json()["windows"]["1h"]
        assert stats["rejected_by_reason"] == {"version-conflict": 3}
        events = read_topic(broker.bootstrap_servers, namespace + topics.ORDERS, expect=3)
    assert sorted(str(e.data.total_amount) for e in events) == ["1.00", "199.00", "199.00"]


def test_strict_input_on_ingest(client: TestClient) -> None:
    body = orjson.dumps(order("S1"))
    for headers in (HEADERS, {**HEADERS, "content-type": "text/plain"}):
        for path in ("/v1/orders", "/v1/orders/batch"):
            response = client.post(path, content=body, headers=headers)
            assert response.status_code == 415, path
            assert response.json()["type"].endswith("/unsupported-media-type")
    twice = body[:-1] + b', "total_amount": "1.00"}'
    for path, content in (("/v1/orders", twice), ("/v1/orders/batch", b"[" + twice + b"]")):
        response = client.post(path, content=content, headers=JSON_HEADERS)
        assert response.status_code == 422, path
        assert response.json()["type"].endswith("/duplicate-key")
    for bad in ("T\u202e1", "T\u200b1", "\ufeffT1"):
        response = client.post("/v1/orders", json=order(bad), headers=HEADERS)
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["code"] == "text.format_character"
    spoofed = client.post("/v1/orders", json=order("S2", customer_id="c\u20661"), headers=HEADERS)
    assert spoofed.json()["errors"][0]["field"] == "customer_id"
    # the upload stays multipart
    upload = client.post(
        "/v1/imports/orders",
        files={"file": ("o.csv", b"order_id,customer_id,created_at,total_amount\n", "text/csv")},
        headers=HEADERS,
    )
    assert upload.status_code == 202


def test_limits_answer_413(client: TestClient) -> None:
    huge = order(promotion="x" * (300 * 1024))
    response = client.post("/v1/orders", json=huge, headers=HEADERS)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    response = client.post("/v1/orders/batch", json={"orders": [{}] * 5001}, headers=HEADERS)
    assert response.status_code == 413
    assert response.json()["max_records"] == 5000
    too_many_items = order(items=[{"sku": "a"}] * 501)
    response = client.post("/v1/orders", json=too_many_items, headers=HEADERS)
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "items.too_many"


def test_batch_gives_a_result_per_order(client: TestClient) -> None:
    orders = [order(f"B{i}") for i in range(300)]
    orders[5] = order("B5", created_at="not a time")
    orders[7] = {"order_id": "B7"}
    orders[9] = order("B8")  # the same version as B8, in the same batch
    response = client.post("/v1/orders/batch", json={"orders": orders}, headers=HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (297, 1, 2)
    results = body["results"]
    assert results[5]["status"] == "rejected"
    assert results[5]["reasons"] == [
        {"field": "created_at", "code": "time.format", "message": "is not an ISO 8601 timestamp"}
    ]
    assert {r["code"] for r in results[7]["reasons"]} >= {"required"}
    assert results[9]["status"] == "duplicate" and results[9]["id"] == "B8"
    # a bare array works too; the second time everything is a duplicate
    again = client.post("/v1/orders/batch", json=orders[:10], headers=HEADERS).json()
    assert (again["accepted"], again["duplicate"], again["rejected"]) == (0, 8, 2)


def test_customers_and_interactions(client: TestClient) -> None:
    customer = {
        "customer_id": "c-7",
        "name": "王五",
        "mobile": "+86 139 0013 9000",
        "address": {"province": "广东", "city": "深圳"},
    }
    response = client.post("/v1/customers", json=customer, headers=HEADERS)
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    assert client.post("/v1/customers", json=customer, headers=HEADERS).json()["status"] == (
        "duplicate"
    )
    batch = client.post(
        "/v1/customers/batch",
        json={
            "customers": [
                customer,
                {"customer_id": "c-8", "gender": "x"},
                {"customer_id": "", "name": "n"},
            ]
        },
        headers=HEADERS,
    ).json()
    assert [r["status"] for r in batch["results"]] == ["duplicate", "accepted", "rejected"]
    assert [(w["field"], w["code"]) for w in batch["results"][1]["warnings"]] == [
        ("gender", "gender.unknown")
    ]
    review = {
        "interaction_id": "r-1",
        "customer_id": "c-7",
        "kind": "review",
        "rating": 5,
        "text": "好评",
        "occurred_at": "2026-11-02T10:00:00+08:00",
    }
    response = client.post("/v1/interactions", json=review, headers=HEADERS)
    assert response.status_code == 202 and response.json()["interaction_id"] == "r-1"
    # a lone surrogate in free-form attributes drops them (a warning), the record is kept
    with_surrogate = b'{"interaction_id": "r-3", "customer_id": "c-7", "kind": "review", '
    with_surrogate += b'"rating": 4, "occurred_at": "2026-11-02T10:00:00+08:00", '
    with_surrogate += b'"attributes": {"k": "\\ud800"}}'
    good = b'{"interaction_id": "r-4", "customer_id": "c-7", "kind": "review", "rating": 4, '
    good += b'"occurred_at": "2026-11-02T10:00:00+08:00", "attributes": {"f": 1.5}}'
    response = client.post(
        "/v1/interactions/batch",
        content=b"[" + good + b", " + with_surrogate + b"]",
        headers=JSON_HEADERS,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted"]
    assert [(w["field"], w["code"]) for w in results[1]["warnings"]] == [
        ("attributes", "text.surrogate")
    ]
    bad = {**review, "interaction_id": "r-2", "rating": None}
    response = client.post("/v1/interactions", json=bad, headers=HEADERS)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "rating"


def test_scopes(client: TestClient) -> None:
    assert (
        client.post("/v1/orders", json=order(), headers={"X-API-Key": "reader"}).status_code == 403
    )
    assert (
        client.post("/v1/orders", json=order(), headers={"X-API-Key": "writer"}).status_code == 202
    )
    assert client.get("/v1/stats", headers={"X-API-Key": "writer"}).status_code == 403
    assert client.get("/v1/stats", headers={"X-API-Key": "reader"}).status_code == 200
    assert (
        client.post("/v1/admin/replay", json={}, headers={"X-API-Key": "writer"}).status_code == 403
    )


def test_stats_endpoint(client: TestClient) -> None:
    client.post(
        "/v1/orders/batch",
        json=[order("S1"), order("S1"), order("S2", currency="X")],
        headers=HEADERS,
    )
    body = client.get("/v1/stats?windows=1h,7d", headers=HEADERS).json()
    hour = body["windows"]["1h"]
    assert (hour["accepted"], hour["duplicate"], hour["rejected"]) == (1, 1, 1)
    assert hour["by_source"]["rest"]["by_kind"]["order"]["rejected"] == 1
    assert hour["rejected_by_reason"] == {"currency.unknown": 1}
    assert client.get("/v1/stats?windows=2y", headers=HEADERS).status_code == 422


def test_admin_replay_republishes_a_range(
    client: TestClient, broker: EmbeddedBroker, namespace: str
) -> None:
    client.post("/v1/orders/batch", json=[order(f"R{i}") for i in range(4)], headers=HEADERS)
    topic = namespace + topics.ORDERS
    read_topic(broker.bootstrap_servers, topic, expect=4)
    response = client.post(
        "/v1/admin/replay", json={"from_sequence": 2, "to_sequence": 3}, headers=HEADERS
    )
    assert response.json() == {"queued": 2}
    events = read_topic(broker.bootstrap_servers, topic, expect=6)
    assert [e.data.order_id for e in events[4:]] == ["R1", "R2"]
    assert events[4].event_id == events[1].event_id  # the same event: consumers skip it
    naive = client.post("/v1/admin/replay", json={"since": "2026-11-01T00:00:00"}, headers=HEADERS)
    assert naive.status_code == 422


def test_openapi_documents_the_rules(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    order_in = components["OrderIn"]
    assert "ISO 4217" in order_in["properties"]["total_amount"]["description"]
    assert "Asia/Shanghai" in order_in["properties"]["created_at"]["description"]
    assert "E.164" in components["BuyerIn"]["properties"]["mobile"]["description"]
    assert "浙江省" in components["AddressIn"]["properties"]["province"]["description"]
    assert "late" in order_in["description"]
    body = schema["paths"]["/v1/orders/batch"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/OrdersBatchIn")
    for path in (
        "/v1/orders",
        "/v1/customers",
        "/v1/interactions",
        "/v1/imports/orders",
        "/v1/imports/{job_id}",
        "/v1/stats",
        "/v1/admin/replay",
    ):
        assert path in schema["paths"]


# --------------------------------------------------------------------------- idempotency


class Server:
    """The app under a real uvicorn server in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=30, what="uvicorn to start")
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def test_idempotency_key_under_concurrency(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, db_url: str
) -> None:
    app = create_app(settings_for(broker, namespace, tmp_path, db_url))
    runtime = app.state.runtime
    with Server(app) as base:
        headers = {**HEADERS, "Idempotency-Key": "key-1"}
        barrier = threading.Barrier(10)

        def post(_: int) -> httpx.Response:
            barrier.wait()
            return httpx.post(f"{base}/v1/orders", json=order("I1"), headers=headers, timeout=60)

        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(post, range(10)))
        assert [r.status_code for r in responses] == [202] * 10
        assert len({r.json()["event_id"] for r in responses}) == 1
        assert all(r.json()["status"] == "accepted" for r in responses)
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 9
        other = httpx.post(f"{base}/v1/orders", json=order("I2"), headers=headers, timeout=60)
        assert other.status_code == 409
        assert other.json()["type"].endswith("/idempotency-key-reused")
        with runtime.db.sessions() as session:
            assert session.execute(select(func.count()).select_from(StoredEvent)).scalar_one() == 1
        events = read_topic(
            broker.bootstrap_servers, namespace + topics.ORDERS, expect=1, timeout=5
        )
    assert len(events) == 1
