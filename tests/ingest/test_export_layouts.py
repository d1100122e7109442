"""The exports shops actually have, each written from the platform's documented headers
(tests/ingest/exports/): recognised, one order per order id with all its items, the
platform's statuses and refunds mapped, and Taobao's 宝贝 details joined by order id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.ingest.app import create_app
from services.ingest.config import Settings
from services.ingest.models import StoredEvent
from shared.events import Order, decode_event
from tests.conftest import ADMIN_KEY, api_client
from tests.ingest.test_imports import finished

HEADERS = {"X-API-Key": ADMIN_KEY}
EXPORTS = Path(__file__).parent / "exports"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("layouts")
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp,
        database_url=f"sqlite:///{tmp / 'ingest.db'}",
        api_key=ADMIN_KEY,
        run_consumer=False,
    )
    with api_client(create_app(settings)) as c:
        yield c


def imported(
    client: TestClient, name: str, **files: str
) -> tuple[dict[str, Any], dict[str, Order]]:
    upload = {"file": (name, (EXPORTS / name).read_bytes(), "text/csv")}
    for field, other in files.items():
        upload[field] = (other, (EXPORTS / other).read_bytes(), "text/csv")
    response = client.post("/v1/imports/orders", files=upload, headers=HEADERS)
    assert response.status_code == 202, response.text
    job = finished(client, response.json()["job_id"])
    assert job["status"] == "completed", job
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.sessions() as session:
        envelopes = session.execute(
            select(StoredEvent.envelope).where(StoredEvent.source == "import")
        ).scalars()
        orders = {o.order_id: o for o in (decode_event(e).data for e in envelopes)}
    return job, orders


def test_shopify_orders_export(client: TestClient) -> None:
    job, orders = imported(client, "shopify_orders.csv")
    assert job["header_format"] == "shopify"
    assert (job["rows_read"], job["accepted"], job["rejected"]) == (7, 5, 1)
    first = orders["#1001"]
    assert first.customer_id == "ada@example.com" and first.currency == "USD"
    assert first.channel == "shopify" and first.status.value == "paid"
    assert [(i.sku, i.quantity, str(i.unit_price), i.brand) for i in first.items] == [
        ("FERN-1", 2, "16.00", "Fern & Co"),
        ("TOWEL-2", 1, "15.00", "Linen Works"),
    ]
    assert str(first.total_amount) == "51.29" and str(first.discount_amount) == "5.00"
    assert first.buyer is not None and first.buyer.email == "ada@example.com"
    assert first.shipping is not None and first.shipping.mobile == "+16502530000"
    assert first.created_at.utcoffset().total_seconds() == -4 * 3600
    refunded = orders["#1002"]
    assert (
        refunded.status.value == "partially_refunded" and str(refunded.refunded_amount) == "10.00"
    )
    assert refunded.shipping is not None and refunded.shipping.mobile is None  # dropped
    assert job["warned"] == 1 and job["warnings"][0]["order_id"] == "#1002"
    assert orders["#1003"].status.value == "cancelled"  # voided
    assert orders["#1004"].status.value == "cancelled"  # Cancelled at
    # no e-mail: the customer is the Billing Phone (in E.164, read in the Billing Country)
    by_phone = orders["#1005"]
    assert by_phone.customer_id == "+16502530001"
    assert by_phone.buyer is not None and by_phone.buyer.mobile == "+16502530001"
    # neither e-mail nor any phone: no customer, so the order is rejected (not guessed)
    assert "#1006" not in orders


def test_jd_orders_export(client: TestClient) -> None:
    job, orders = imported(client, "jd_orders.csv")
    assert job["header_format"] == "jd" and job["encoding"] == "gb18030"
    assert (job["rows_read"], job["accepted"], job["rejected"], job["warned"]) == (4, 3, 0, 0)
    first = orders["230000000001"]
    assert first.customer_id == "jd_zhang88" and first.channel == "jd"
    assert first.status.value == "completed" and first.currency == "CNY"
    assert [(i.sku, i.quantity, str(i.unit_price)) for i in first.items] == [
        ("100012345678", 2, "99.00"),
        ("100012345679", 1, "99.00"),
    ]
    assert str(first.total_amount) == "297.00"
    assert first.buyer is not None and first.buyer.name == "张三" and first.buyer.mobile is None
    assert first.shipping is not None and first.shipping.province == "浙江省"
    assert orders["230000000002"].status.value == "paid"  # 等待出库
    assert orders["230000000003"].status.value == "cancelled"  # 已取消


def test_taobao_orders_joined_with_their_item_details(client: TestClient) -> None:
    job, orders = imported(client, "taobao_orders.csv", items="taobao_details.csv")
    assert job["header_format"] == "taobao"
    assert (job["rows_read"], job["accepted"], job["rejected"], job["warned"]) == (2, 2, 0, 0)
    first = orders["3000000000101"]
    assert first.status.value == "completed" and first.channel == "taobao"
    assert [(i.name, i.sku, i.quantity, str(i.unit_price)) for i in first.items] == [
        ("羊毛围巾", "A-1", 2, "99.50"),
        ("羊毛手套", "A-2", 1, "59.00"),
    ]
    assert first.items[0].category == "颜色分类:灰色"
    assert first.buyer is not None and first.buyer.mobile == "+8613800138000"
    assert orders["3000000000102"].status.value == "created"
    assert [i.name for i in orders["3000000000102"].items] == ["保温杯"]


def test_pinduoduo_orders_export(client: TestClient) -> None:
    job, orders = imported(client, "pinduoduo_orders.csv")
    assert job["header_format"] == "pinduoduo"
    assert (job["rows_read"], job["accepted"], job["rejected"]) == (4, 3, 1)
    first = orders["250901-000000001"]
    # no buyer id in the export: the customer is the consignee's mobile in E.164
    assert first.customer_id == "+8613800138000" and first.channel == "pinduoduo"
    assert first.status.value == "paid" and first.currency == "CNY"
    assert str(first.total_amount) == "90.00" and str(first.discount_amount) == "9.00"
    assert first.paid_at == first.created_at
    assert [(i.sku, i.name, i.quantity, str(i.unit_price)) for i in first.items] == [
        ("1001", "示例保温杯 500ml", 1, "99.00")
    ]
    assert first.buyer is not None and first.buyer.name == "张三"
    assert first.shipping is not None and first.shipping.province == "浙江省"
    assert first.shipping.city == "杭州市" and first.shipping.district == "西湖区"
    second = orders["250901-000000002"]
    assert second.status.value == "completed" and str(second.items[0].unit_price) == "30.00"
    refunded = orders["250901-000000003"]
    assert refunded.status.value == "refunded" and refunded.customer_id == first.customer_id
    # a masked mobile is no identity: that order has no customer and is rejected
    assert "250901-000000004" not in orders
