"""Real-world input through the real processes (issue 11): a bad contact field never loses
the order, consent collected before the first order applies when it arrives (profile and
campaign), the address comes from valid purchases, a rule literal 浙江 finds 浙江省, and
`男` is male from every entry point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.testing import wait_for
from tests.e2e.system import RunningSystem

NOW = datetime.now(UTC).replace(microsecond=0)


def _order(order_id: str, status: str, minutes_ago: int, **extra: Any) -> dict[str, Any]:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return {
        "order_id": order_id,
        "customer_id": "rw-1",
        "status": status,
        "created_at": at,
        "updated_at": at,
        "currency": "CNY",
        "total_amount": "199.00",
        "channel": "天猫",
        **extra,
    }


def test_real_world_input_end_to_end(system: RunningSystem) -> None:
    system.wait_ready(timeout=120)
    # consent collected at registration, before profile has seen the customer
    policy = {"channels": {"sms": {"consented": True, "source": "registration"}}}
    put = system.put("profile", "/v1/customers/rw-1/contact-policy", json=policy)
    assert put.status_code == 200, put.text

    # a valid purchase whose mobile is not a number: accepted, the mobile dropped
    paid = _order(
        "RW-1",
        "paid",
        30,
        paid_at=(NOW - timedelta(minutes=30)).isoformat(),
        buyer={"name": "王五", "mobile": "12345"},
        shipping={"province": "浙江", "city": "杭州", "address": "文三路 100 号"},
    )
    response = system.post("ingest", "/v1/orders", json=paid)
    assert response.status_code == 202, response.text
    assert [w["code"] for w in response.json()["warnings"]] == ["phone.invalid"]
    # a newer unpaid order shipping elsewhere: not the customer's address
    unpaid = _order("RW-2", "created", 5, shipping={"province": "上海", "city": "上海"})
    assert system.post("ingest", "/v1/orders", json=unpaid).status_code == 202
    # the customer's own record, gender written the way the shop writes it
    record = {"customer_id": "rw-1", "gender": "男", "updated_at": NOW.isoformat()}
    assert system.post("ingest", "/v1/customers", json=record).status_code == 202

    def profile() -> dict[str, Any] | None:
        body = system.get("profile", "/v1/customers/rw-1").json()
        tx = body.get("transactions") or {}
        if tx.get("orders_placed") == 2 and body["basic"].get("gender"):
            return body
        return None

    body = wait_for(profile, timeout=60, interval=0.5, what="profile with both orders")
    assert body["transactions"]["order_count"] == 1
    assert body["basic"]["gender"] == "male"
    assert body["basic"]["address"]["city"] == "杭州市"
    assert body["contact_policy"]["channels"]["sms"]["consented"] is True
    assert body["data_quality"]["input_warnings"] == [
        {"field": "buyer.mobile", "code": "phone.invalid", "orders": 1}
    ]
    [conflict] = [c for c in body["data_quality"]["conflicts"] if c["field"] == "address"]
    assert [a["value"]["city"] for a in conflict["alternatives"]] == ["上海市"]

    # campaign learnt the policy given before the first order
    def audience() -> dict[str, Any] | None:
        response = system.get("campaign", "/v1/audience/rw-1")
        if response.status_code != 200:
            return None
        found = response.json()
        channels = (found.get("contact_policy") or {}).get("channels") or {}
        # the province: the orders' shipping stands in (the newest, here the unpaid 上海)
        # until profile's update says where the customer lives (the paid order's 浙江)
        settled = found.get("province") == "浙江省"
        return found if channels.get("sms", {}).get("consented") and settled else None

    seen = wait_for(audience, timeout=60, interval=0.5, what="campaign's audience row")
    assert seen["city"] == "杭州市"

    # a segment whose rule says zhejiang / 上海 finds the customer, as search does (segment's
    # province is the latest order's, here the unpaid one's 上海市)
    rule = {"field": "province", "op": "in", "value": ["zhejiang", "上海"]}
    segment = system.post("segment", "/v1/segments", json={"name": "zj", "rule": rule})
    assert segment.status_code == 201, segment.text

    def members() -> list[str] | None:
        response = system.get("segment", f"/v1/segments/{segment.json()['segment_id']}/members")
        found = response.json().get("items") if response.status_code == 200 else None
        return found if found else None

    assert wait_for(members, timeout=60, interval=0.5, what="the segment's members") == ["rw-1"]
    # the channel name the shop wrote is one spelling downstream
    scores = system.get("segment", "/v1/customers/rw-1/scores").json()
    assert scores["channels"] == ["tmall"]
