"""Issue 5, done when: an end-to-end erasure through the real processes and the real broker.

A customer with a Chinese name, a mobile and a street address places orders and sends a
customer record; the data reaches every service. ``DELETE /v1/customers/{id}`` at
profile must leave no service returning or storing their personal data (ingest's event
store included: its SQLite file is searched directly, every table and column), while a
bystander's data stays. Then ingest replays its store, and every record the topics hold
for the customer is delivered again with fresh event ids (what a consumer reading the
topics from the beginning would see); nothing brings the customer back.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import unique, wait_for
from shared import topics
from shared.bus import Publisher
from shared.erasure_acks import APPLYING_SERVICES
from shared.events import encode_event
from tests.e2e.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

NAME = "欧阳娜娜"
MOBILE = "13912345678"
ADDRESS = "文三路 478 号华星时代广场 B 座 1203 室"
EMAIL = "ouyang.nana@example.cn"
WECHAT = "nana_ouyang_1990"

OTHER_NAME = "司马光明"
OTHER_MOBILE = "13700001111"
OTHER_ADDRESS = "中山北路 88 号"


def _needles(*values: str) -> set[bytes]:
    """Each value as UTF-8 and as it looks inside ASCII-escaped JSON."""
    found: set[bytes] = set()
    for value in values:
        found.add(value.encode())
        found.add(json.dumps(value)[1:-1].encode())
    return found


PII = _needles(NAME, MOBILE, "139 1234 5678", "1234 5678", ADDRESS, "华星时代广场", EMAIL, WECHAT)
OTHER_PII = _needles(OTHER_NAME, OTHER_MOBILE, OTHER_ADDRESS)


def _search(data_dir: Path, needles: set[bytes]) -> list[tuple[str, str, str]]:
    """(database, table, column) of every stored value that contains a needle."""
    hits: list[tuple[str, str, str]] = []
    databases = sorted(data_dir.glob("*.db"))
    assert {p.name for p in databases} >= {"ingest.db", "profile.db", "segment.db", "campaign.db"}
    for path in databases:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            for table in tables:
                columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
                for row in connection.execute(f'SELECT * FROM "{table}"'):
                    for column, value in zip(columns, row, strict=True):
                        if isinstance(value, str):
                            value = value.encode()
                        if isinstance(value, bytes) and any(n in value for n in needles):
                            hits.append((path.name, table, column))
        finally:
            connection.close()
    return sorted(set(hits))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _order(order_id: str, customer_id: str, at: datetime, amount: str, **extra: Any) -> dict:
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": "paid",
        "created_at": _iso(at - timedelta(minutes=3)),
        "paid_at": _iso(at),
        "updated_at": _iso(at),
        "currency": "CNY",
        "total_amount": amount,
        "channel": "tmall",
        "items": [{"sku": "A-1", "name": "羊毛围巾", "unit_price": amount, "quantity": 1}],
        **extra,
    }


def test_erasure_reaches_every_service_and_survives_a_replay(system: RunningSystem) -> None:
    system.wait_ready()
    customer = unique("tb_nana")
    other = unique("tb_guangming")
    now = datetime.now(UTC)

    posts = [
        (
            "/v1/orders",
            _order(
                f"{customer}-1",
                customer,
                now - timedelta(days=20),
                "199.00",
                buyer={"name": NAME, "mobile": "+86 139 1234 5678", "email": EMAIL},
                shipping={
                    "province": "浙江省",
                    "city": "杭州市",
                    "district": "西湖区",
                    "address": ADDRESS,
                    "recipient": NAME,
                    "mobile": "139-1234-5678",
                },
            ),
        ),
        (
            "/v1/orders",
            _order(
                f"{customer}-2",
                customer,
                now - timedelta(days=2),
                "88.50",
                buyer={"name": NAME, "mobile": MOBILE},
                shipping={"province": "浙江", "city": "杭州", "address": ADDRESS},
            ),
        ),
        (
            "/v1/customers",
            {
                "customer_id": customer,
                "name": NAME,
                "mobile": "１３９ １２３４ ５６７８",
                "email": EMAIL,
                "wechat": WECHAT,
                "address": {"province": "浙江省", "city": "杭州市", "address": ADDRESS},
                "source": "crm-import",
                "updated_at": _iso(now - timedelta(days=1)),
            },
        ),
        (
            "/v1/orders",
            _order(
                f"{other}-1",
                other,
                now - timedelta(days=5),
                "66.00",
                buyer={"name": OTHER_NAME, "mobile": OTHER_MOBILE},
                shipping={"province": "上海市", "city": "上海市", "address": OTHER_ADDRESS},
            ),
        ),
    ]
    for path, body in posts:
        response = system.post("ingest", path, json=body)
        assert response.status_code == 202, response.text

    # -- the customer reaches every service ------------------------------------------------
    def profile_view() -> dict | None:
        response = system.get("profile", f"/v1/customers/{customer}")
        if response.status_code != 200:
            return None
        body = response.json()
        complete = body["transactions"]["order_count"] == 2 and body["basic"]["wechat"]
        return body if complete and (body.get("scores") or {}).get("rfm_segment") else None

    profile = wait_for(profile_view, timeout=40, interval=0.3, what="the full profile")
    assert profile["basic"]["name"] == NAME
    assert profile["basic"]["mobiles"] == ["+86" + MOBILE]
    assert profile["basic"]["address"]["address"] == ADDRESS
    wait_for(
        lambda: system.get("profile", f"/v1/customers/{other}").status_code == 200,
        timeout=20,
        what="the bystander's profile",
    )
    policy = {"channels": {"sms": {"consented": True}, "wechat": {"consented": True}}}
    response = system.put("profile", f"/v1/customers/{customer}/contact-policy", json=policy)
    assert response.status_code == 200, response.text

    scores = system.get("segment", f"/v1/customers/{customer}/scores")
    assert scores.status_code == 200, scores.text
    assert scores.json()["frequency"] == 2

    def audience() -> dict | None:
        response = system.get("campaign", f"/v1/audience/{customer}")
        body = response.json() if response.status_code == 200 else {}
        return body if body.get("rfm_segment") and body.get("contact_policy") else None

    wait_for(audience, timeout=30, interval=0.3, what="campaign's projection of the customer")

    # the search finds the data where it is stored (else a clean result below proves nothing)
    before = _search(system.data_dir, PII)
    assert {db for db, _, _ in before} >= {"ingest.db", "profile.db"}, before
    assert ("ingest.db", "stored_events", "envelope") in before

    # -- erasure ---------------------------------------------------------------------------
    erased = system.delete("profile", f"/v1/customers/{customer}")
    assert erased.status_code == 200, erased.text
    erasure = erased.json()
    assert erasure["customer_ids"] == 1  # a count: the erasure keeps no ids

    assert system.get("profile", f"/v1/customers/{customer}").status_code == 404
    assert system.get("profile", f"/v1/customers/{customer}/export").status_code == 404
    found = system.get("profile", "/v1/customers", params={"mobile": MOBILE})
    assert found.status_code == 200 and found.json()["items"] == []
    audit = system.get("profile", f"/v1/erasures/{erasure['erasure_id']}")
    assert audit.status_code == 200, audit.text
    assert not any(n in audit.content for n in PII)

    wait_for(
        lambda: system.get("segment", f"/v1/customers/{customer}/scores").status_code == 404,
        timeout=30,
        what="segment to drop the customer's scores",
    )

    assert system.get("segment", f"/v1/customers/{customer}/clv-summary").status_code == 404
    assert customer not in _scored(system)
    assert other in _scored(system)

    def audience_erased() -> bool:
        response = system.get("campaign", f"/v1/audience/{customer}")
        if response.status_code == 404:
            return True
        body = response.json()
        return body["erased"] and _blank(body)

    wait_for(audience_erased, timeout=30, interval=0.3, what="campaign to erase the customer")

    # every service acknowledged it: profile shows the erasure applied everywhere
    assert erasure["pending_services"] == list(APPLYING_SERVICES)

    def applied_everywhere() -> dict | None:
        body = system.get("profile", f"/v1/erasures/{erasure['erasure_id']}").json()
        return body if body["pending_services"] == [] else None

    progress = wait_for(applied_everywhere, timeout=30, interval=0.3, what="every acknowledgement")
    statuses = {s["service"]: s["status"] for s in progress["services"]}
    assert statuses == dict.fromkeys(APPLYING_SERVICES, "applied")
    assert system.get("profile", "/v1/erasures").json()["items"] == []

    def clean() -> bool:
        assert _search(system.data_dir, PII) == []
        return True

    wait_for(clean, timeout=30, interval=0.5, what="no stored personal data of the customer")

    def no_raw_bytes() -> bool:
        # not only the rows: the database files and their write-ahead logs hold no copy
        files = sorted(system.data_dir.glob("*.db*"))
        hits = [(f.name, n) for f in files for n in PII if n in f.read_bytes()]
        assert hits == [], hits
        return True

    wait_for(no_raw_bytes, timeout=30, interval=0.5, what="no raw bytes of the erased data")
    # the bystander's data is still there: the search would have seen the erased data
    kept = _search(system.data_dir, OTHER_PII)
    assert ("ingest.db", "stored_events", "envelope") in kept
    assert system.get("profile", f"/v1/customers/{other}").json()["basic"]["name"] == OTHER_NAME

    # -- replay ----------------------------------------------------------------------------
    replay = system.post("ingest", "/v1/admin/replay", json={})
    assert replay.status_code == 200, replay.text
    assert replay.json()["queued"] >= 4

    def mine(event: Any) -> bool:
        return event.key == customer

    # originals (2 orders + 1 customer record) and the replayed copies of the current ones
    on_orders = system.read(
        topics.ORDERS,
        expect=4,
        timeout=30,
        predicate=mine,
    )
    on_customers = system.read(
        topics.CUSTOMERS,
        expect=2,
        timeout=30,
        predicate=mine,
    )
    assert len(on_orders) == 4 and len(on_customers) == 2
    # what ingest replays is the scrubbed version: no personal data goes out again
    for replayed in (*on_orders[2:], on_customers[1]):
        assert not any(n in encode_event(replayed) for n in PII), replayed
    replayed_orders = on_orders[2:]
    assert replayed_orders[0].data.buyer is None
    assert replayed_orders[0].data.shipping.province == "浙江省"

    # a consumer that reads the topics from the beginning sees every record again, the
    # originals with the personal data included: deliver them all with fresh event ids
    on_segments = system.read(
        topics.SEGMENTS,
        timeout=10,
        predicate=mine,
    )
    assert on_segments and on_segments[-1].data.removed
    again = [
        (topic, event.model_copy(update={"event_id": uuid.uuid4()}))
        for topic, events in (
            (topics.ORDERS, on_orders),
            (topics.CUSTOMERS, on_customers),
            (topics.SEGMENTS, [e for e in on_segments if not e.data.removed]),
        )
        for event in events
    ]
    publisher = Publisher(system.bootstrap_servers, system.namespace)
    try:
        publisher.publish_all((topic, e.key, encode_event(e)) for topic, e in again)
    finally:
        publisher.close()
    order_ids = {str(e.event_id) for t, e in again if t == topics.ORDERS}
    every_id = {str(e.event_id) for _, e in again}
    expected_consumers = {
        "profile.db": every_id,
        "segment.db": order_ids,
        "campaign.db": order_ids | {str(e.event_id) for t, e in again if t == topics.SEGMENTS},
    }

    def processed() -> bool:
        for db, ids in expected_consumers.items():
            connection = sqlite3.connect(f"file:{system.data_dir / db}?mode=ro", uri=True)
            try:
                seen = {
                    row[0] for row in connection.execute("SELECT event_id FROM processed_events")
                }
            finally:
                connection.close()
            if not ids <= seen:
                return False
        return True

    wait_for(processed, timeout=40, interval=0.5, what="every service to consume the replay")

    assert system.get("profile", f"/v1/customers/{customer}").status_code == 404
    assert system.get("segment", f"/v1/customers/{customer}/scores").status_code == 404
    assert customer not in _scored(system)
    assert audience_erased()
    assert _search(system.data_dir, PII) == []
    assert system.get("profile", f"/v1/customers/{other}").status_code == 200


def _scored(system: RunningSystem) -> set[str]:
    response = system.get("segment", "/v1/scores", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return {item["customer_id"] for item in response.json()["items"]}


def _blank(audience: dict[str, Any]) -> bool:
    """An erased customer in campaign's projection: only the erasure mark remains."""
    return (
        audience["contact_policy"] is None
        and audience["province"] is None
        and audience["city"] is None
        and audience["tags"] == []
        and audience["segments"] == []
        and audience["rfm_segment"] is None
        and audience["lifecycle_stage"] is None
        and audience["frequency"] is None
    )
