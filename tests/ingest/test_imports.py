"""Bulk CSV import: the shop platform's export (GBK) and our own columns, as a background job."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from devtools.testing import wait_for
from services.ingest.app import create_app
from services.ingest.config import Settings
from services.ingest.import_rows import detect_encoding
from services.ingest.models import ImportJob, StoredEvent
from shared.events import decode_event
from tests.conftest import ADMIN_KEY, api_client

HEADERS = {"X-API-Key": ADMIN_KEY}

TAOBAO_HEADER = [
    "订单编号",
    "买家会员名",
    "买家实际支付金额",
    "订单状态",
    "订单创建时间",
    "订单付款时间",
    "收货人姓名",
    "收货地址",
    "联系手机",
    "宝贝标题",
    "宝贝总数量",
    "退款金额",
    "买家留言",
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("imports")
    settings = Settings(
        # no broker: the import is about validation, storage and progress; the outbox keeps
        # the events (delivery is covered by the Kafka tests)
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp,
        database_url=f"sqlite:///{tmp / 'ingest.db'}",
        api_key=ADMIN_KEY,
        run_consumer=False,
    )
    with api_client(create_app(settings)) as c:
        yield c


def upload(client: TestClient, data: bytes, name: str = "orders.csv", **form: str) -> str:
    response = client.post(
        "/v1/imports/orders",
        files={"file": (name, data, "text/csv")},
        data=form,
        headers=HEADERS,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["job_id"])


def finished(client: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/v1/imports/{job_id}", headers=HEADERS).json()
        return body if body["status"] in ("completed", "failed") else None

    return wait_for(done, timeout=timeout, interval=0.2, what=f"import {job_id}")


def taobao_row(i: int) -> list[str]:
    status = (
        "交易成功",
        "买家已付款，等待卖家发货",
        "卖家已发货，等待买家确认",
        "等待买家付款",
        "交易关闭",
    )[i % 5]
    refund = "10.00" if i % 5 == 0 and i % 3 == 0 else "0.00"
    return [
        f'="{3000000000000 + i}"',
        f"buyer{i % 20000}",
        f"{(i % 500) + 9.9:.2f}",
        status,
        f"2026-{1 + i % 10:02d}-{1 + i % 28:02d} 10:{i % 60:02d}:00",
        f"2026-{1 + i % 10:02d}-{1 + i % 28:02d} 10:{i % 60:02d}:30" if i % 5 != 3 else "",
        "张三",
        "浙江省 杭州市 西湖区 文三路100号",
        f"'138{i % 1000:08d}",
        "羊毛围巾 冬季加厚",
        str(1 + i % 3),
        refund,
        "",
    ]


def test_a_100k_row_gbk_export_with_bad_rows_imports_with_exact_counts(
    client: TestClient, tmp_path: Path
) -> None:
    rows = 100_000
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(TAOBAO_HEADER)
    expected = {"rejected": 0, "merged": 0, "warned": 0}
    written: list[list[str]] = []
    for i in range(rows):
        row = taobao_row(i)
        if i % 250 == 99:
            # a row of an order ten rows up: rows sharing an order id within one import are
            # one order, consecutive or not (held aside and stored after the rest)
            row = written[i - 10]
            expected["merged"] += 1
        elif i % 50 == 7:
            row[2] = "abc"  # amount not a number
            expected["rejected"] += 1
        elif i % 100 == 13:
            row[8] = "12345"  # not a phone number: dropped, the order kept with a warning
            expected["warned"] += 1
        elif i % 1000 == 500:
            row[3] = "外星状态"  # unknown status
            expected["rejected"] += 1
        elif i % 10000 == 1234:
            row = row[:3]  # a truncated line
            expected["rejected"] += 1
        writer.writerow(row)
        written.append(row)
    data = out.getvalue().encode("gbk")
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    assert detect_encoding(path) == "gb18030"

    started = time.monotonic()
    job_id = upload(client, data, "淘宝订单导出.csv")
    job = finished(client, job_id, timeout=240)
    elapsed = time.monotonic() - started
    assert job["status"] == "completed", job
    assert job["encoding"] == "gb18030" and job["header_format"] == "taobao"
    assert job["rows_read"] == rows
    assert job["rejected"] == expected["rejected"] == 2110
    assert job["duplicate"] == 0
    assert job["accepted"] == rows - 2110 - expected["merged"] == rows - 2110 - 400
    assert job["warned"] == expected["warned"] == 1000
    print(f"100k-row GBK import in {elapsed:.1f}s")

    # the rejected rows, with line numbers and reasons, page by page
    first = client.get(f"/v1/imports/{job_id}?limit=3", headers=HEADERS).json()
    assert [r["row"] for r in first["rejections"]] == [9, 59]  # i = 7, 57 (+2)
    assert first["rejections"][0]["reasons"][0]["code"] == "money.format"
    assert first["rejections"][0]["order_id"] == "3000000000007"
    assert [r["row"] for r in first["warnings"]] == [15]  # i = 13: kept, mobile dropped
    # (联系手机 is the buyer's and the shipping mobile)
    assert [(w["field"], w["code"]) for w in first["warnings"][0]["reasons"]] == [
        ("buyer.mobile", "phone.invalid"),
        ("shipping.mobile", "phone.invalid"),
    ]
    following = client.get(
        f"/v1/imports/{job_id}?limit=1000&cursor={first['next_cursor']}", headers=HEADERS
    ).json()
    assert following["rejections"][0]["row"] == 109
    assert following["warnings"][0]["row"] == 115
    truncated = client.get(
        f"/v1/imports/{job_id}?limit=1000&cursor=" + _cursor(1234 + 1), headers=HEADERS
    ).json()["rejections"][0]
    assert truncated["row"] == 1236
    assert truncated["reasons"][0]["code"] == "csv.columns"

    # what was stored is normalised like any other order
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.sessions() as session:
        envelope = session.execute(
            select(StoredEvent.envelope).where(StoredEvent.entity_id == "3000000000015")
        ).scalar_one()
    stored = decode_event(envelope).data
    assert stored.status.value == "partially_refunded"  # 交易成功 with a refund
    with runtime.db.sessions() as session:
        merged = decode_event(
            session.execute(
                select(StoredEvent.envelope).where(StoredEvent.entity_id == "3000000000089")
            ).scalar_one()
        ).data
    assert len(merged.items) == 2  # its own row and the one 10 rows below
    assert stored.channel == "taobao" and stored.currency == "CNY"
    assert stored.buyer.mobile == "+8613800000015" and stored.buyer.name == "张三"
    assert (stored.shipping.province, stored.shipping.city) == ("浙江省", "杭州市")
    assert stored.items[0].name == "羊毛围巾 冬季加厚" and stored.items[0].quantity == 1
    assert stored.created_at.utcoffset().total_seconds() == 8 * 3600
    with runtime.db.sessions() as session:
        envelope = session.execute(
            select(StoredEvent.envelope).where(StoredEvent.entity_id == "3000000000013")
        ).scalar_one()
    warned = decode_event(envelope).data
    assert warned.buyer.mobile is None and warned.buyer.name == "张三"
    assert str(warned.total_amount) == f"{13 + 9.9:.2f}"


def _cursor(row: int) -> str:
    from shared.pagination import encode_cursor

    return encode_cursor({"row": row})


def test_our_columns_in_utf8_and_a_custom_mapping(client: TestClient) -> None:
    ours = (
        "\ufefforder_id,customer_id,status,created_at,currency,total_amount,buyer_mobile,province,"
        "city\n"
        "U1,c1,paid,2026-11-01T10:00:00+08:00,USD,12.50,+1 650 253 0000,广东,深圳\n"
        "U2,c2,paid,2026-11-01T10:00:00+08:00,JPY,12.50,,,\n"
        "\n"
        "U3,c3,refunded,2026-11-01 10:00:00,CNY,99,,,\n"
    ).encode()
    job = finished(client, upload(client, ours))
    assert job["encoding"] == "utf-8-sig" and job["header_format"] == "ours"
    for moment in ("created_at", "started_at", "finished_at"):  # with their offset (UTC)
        assert job[moment].endswith(("Z", "+00:00")), job[moment]
    assert (job["rows_read"], job["accepted"], job["rejected"]) == (3, 2, 1)
    assert job["rejections"][0]["row"] == 3
    assert job["rejections"][0]["reasons"][0]["code"] == "money.scale"

    theirs = "单号,客户,状态,下单,金额\nX1,k1,交易成功,2026-11-01 10:00,5\n".encode("gbk")
    mapping = orjson.dumps(
        {
            "单号": "order_id",
            "客户": "customer_id",
            "状态": "status",
            "下单": "created_at",
            "金额": "total_amount",
        }
    ).decode()
    job = finished(client, upload(client, theirs, mapping=mapping, encoding="gbk"))
    assert job["header_format"] == "mapped" and job["accepted"] == 1, job

    missing = finished(client, upload(client, b"foo,bar\n1,2\n"))
    assert missing["status"] == "failed"
    assert "order_id" in missing["error"]
    bad = client.post(
        "/v1/imports/orders",
        files={"file": ("x.csv", b"a", "text/csv")},
        data={"mapping": '{"a": "nope"}'},
        headers=HEADERS,
    )
    assert bad.status_code == 422
    assert client.get("/v1/imports/nope", headers=HEADERS).status_code == 404


def test_an_import_interrupted_by_a_restart_resumes_from_its_last_committed_chunk(
    tmp_path: Path,
) -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'ingest.db'}",
        api_key=ADMIN_KEY,
        run_consumer=False,
        import_chunk_rows=100,
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(TAOBAO_HEADER)
    for i in range(50_000):
        writer.writerow(taobao_row(i))
    app = create_app(settings)
    runtime = app.state.runtime
    with api_client(app) as client:
        job_id = upload(client, out.getvalue().encode("gbk"))
        wait_for(
            lambda: client.get(f"/v1/imports/{job_id}", headers=HEADERS).json()["rows_read"],
            what="the import under way",
        )
    # leaving the client stopped the runtime: the import thread is gone after a whole chunk
    thread = runtime.imports._thread
    assert thread is not None and not thread.is_alive()
    with runtime.db.sessions() as session:
        job = session.get(ImportJob, job_id)
        assert job is not None and job.status == "running"
        interrupted_at = job.rows_read
        assert 0 < interrupted_at < 50_000
        assert interrupted_at % 100 == 0  # whole chunks only
        assert job.last_line == interrupted_at + 1  # (the header is line 1)
        stored = session.scalar(select(func.count()).select_from(StoredEvent))
        assert stored == job.accepted  # every counted row is stored, nothing half-written

    # the restarted service resumes the job after its last committed chunk
    with api_client(create_app(settings)) as client:
        job_body = finished(client, job_id, timeout=240)
    assert job_body["status"] == "completed", job_body
    assert (job_body["rows_read"], job_body["accepted"]) == (50_000, 50_000 - 0)
    assert job_body["duplicate"] == 0  # nothing read twice
    with runtime.db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoredEvent)) == 50_000
    assert not (tmp_path / "imports" / f"{job_id}.csv").exists()


def test_a_line_item_export_makes_one_order_per_order_id(client: TestClient) -> None:
    # three rows of one order (one per item), then an order of one row, then an order whose
    # total disagrees with its items
    export = (
        "order_id,customer_id,status,created_at,currency,total_amount,buyer_mobile,"
        "item_sku,item_name,item_quantity,item_unit_price\n"
        "L1,c1,paid,2026-11-01 10:00:00,CNY,60.00,13800138000,A,围巾,1,10.00\n"
        "L1,,,,,,,B,手套,2,15.00\n"
        "L1,,,,,,,C,帽子,1,20.00\n"
        "L2,c2,paid,2026-11-01 11:00:00,CNY,5.00,,D,袜子,1,5.00\n"
        "L3,c3,paid,2026-11-01 12:00:00,CNY,500.00,,E,毛衣,1,100.00\n"
        "L3,c3,paid,2026-11-01 12:00:00,CNY,500.00,,F,裤子,1,100.00\n"
    ).encode()
    job = finished(client, upload(client, export))
    assert job["status"] == "completed", job
    assert (job["rows_read"], job["accepted"], job["duplicate"], job["rejected"]) == (6, 3, 0, 0)
    assert job["warned"] == 1
    assert job["warnings"][0]["row"] == 6 and job["warnings"][0]["order_id"] == "L3"
    assert job["warnings"][0]["reasons"][0]["code"] == "money.items_mismatch"
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.sessions() as session:
        envelope = session.execute(
            select(StoredEvent.envelope).where(StoredEvent.entity_id == "L1")
        ).scalar_one()
    order = decode_event(envelope).data
    assert [(i.sku, i.quantity, str(i.unit_price)) for i in order.items] == [
        ("A", 1, "10.00"),
        ("B", 2, "15.00"),
        ("C", 1, "20.00"),
    ]
    assert order.customer_id == "c1" and str(order.total_amount) == "60.00"
    assert order.buyer is not None and order.buyer.mobile == "+8613800138000"
