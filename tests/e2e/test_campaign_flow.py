"""Issue 6, done when: a campaign measured against its holdout, end to end on the real broker.

Orders posted to ingest form a custom segment in the segment service; profile publishes
the customers' contact policies; campaign's projection learns both from the topics; a
campaign with a 20 % holdout launches on the segment; the message requests are read back
from ``crm.campaign.messages.v1``; then orders arrive for treated and held-out customers
inside and outside the conversion window (and some that are no valid purchase), a
gateway publishes receipts, and every number of the report is checked against one
computed by hand here.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.testing import unique, wait_for
from shared import topics
from shared.bus import Publisher
from shared.events import MessageReceipt, MessageReceiptRecordedEvent
from tests.e2e.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

Z95 = 1.959963984540054
CENT = Decimal("0.01")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _order(
    order_id: str,
    customer_id: str,
    *,
    status: str,
    amount: str,
    at: datetime,
    province: str = "浙江省",
    city: str = "杭州市",
    refunded: str = "0.00",
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
) -> dict[str, Any]:
    valid = status in ("paid", "shipped", "completed", "partially_refunded", "refunded")
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": status,
        "created_at": _iso(created_at or at - timedelta(minutes=5)),
        "paid_at": _iso(at) if valid else None,
        "updated_at": _iso(updated_at or at),
        "currency": "CNY",
        "total_amount": amount,
        "refunded_amount": refunded,
        "channel": "tmall",
        "items": [{"sku": "S-1", "name": "羊毛围巾", "unit_price": amount, "quantity": 1}],
        "buyer": {"name": "顾客"},
        "shipping": {"province": province, "city": city},
    }


def _post_order(system: RunningSystem, order: dict[str, Any]) -> None:
    response = system.post("ingest", "/v1/orders", json=order)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted", response.text


def _bucket(campaign_id: str, customer_id: str) -> float:
    digest = hashlib.blake2b(f"{campaign_id}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _wilson(x: int, n: int) -> tuple[float, float]:
    p = x / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _group(
    members: list[str], converted: set[str], revenue: dict[str, Decimal], returning: set[str]
) -> dict[str, Any]:
    n = len(members)
    conv = [c for c in members if c in converted]
    total = sum((revenue.get(c, Decimal(0)) for c in members), Decimal(0))
    back = [c for c in members if c in returning]
    back_conv = [c for c in back if c in converted]
    return {
        "customers": n,
        "converted": len(conv),
        "conversion_rate": pytest.approx(len(conv) / n),
        "conversion_rate_ci95": pytest.approx(list(_wilson(len(conv), n))),
        "revenue": str(total.quantize(CENT)),
        "revenue_per_customer": str((total / n).quantize(CENT)),
        "returning_customers": len(back),
        "returning_converted": len(back_conv),
        "returning_customer_rate": pytest.approx(len(back_conv) / len(back)) if back else None,
    }


def test_campaign_report_matches_a_hand_computation(system: RunningSystem) -> None:
    system.wait_ready()
    run = unique("c")
    start = datetime.now(UTC)

    # -- a custom segment: every customer whose latest order ships to 浙江省 -------------------
    response = system.post(
        "segment",
        "/v1/segments",
        json={
            "segment_id": "zhejiang",
            "name": "浙江 buyers",
            "rule": {"field": "province", "op": "eq", "value": "浙江省"},
        },
    )
    assert response.status_code == 201, response.text

    # 40 customers in 浙江省: 36 buyers (one paid order 2-6 days ago) and 4 prospects (an
    # unpaid order only); 4 buyers in 江苏省 outside the segment (consented, never targeted)
    buyers = [f"{run}-b{i:02d}" for i in range(36)]
    prospects = [f"{run}-p{i:02d}" for i in range(4)]
    outsiders = [f"{run}-o{i:02d}" for i in range(4)]
    members = sorted(buyers + prospects)
    first_orders: dict[str, dict[str, Any]] = {}
    for i, customer in enumerate(buyers):
        order = _order(
            f"{customer}-1",
            customer,
            status="paid",
            amount=f"{100 + i}.00",
            at=start - timedelta(days=2 + i % 5, hours=i),
        )
        first_orders[customer] = order
    for customer in prospects:
        first_orders[customer] = _order(
            f"{customer}-1",
            customer,
            status="created",
            amount="88.00",
            at=start - timedelta(days=1),
        )
    for customer in outsiders:
        first_orders[customer] = _order(
            f"{customer}-1",
            customer,
            status="paid",
            amount="150.00",
            at=start - timedelta(days=3),
            province="江苏省",
            city="南京市",
        )
    for order in first_orders.values():
        _post_order(system, order)

    # -- contact policies through profile ---------------------------------------------------
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=2)).strftime("%H:%M"),
        "end": (now + timedelta(hours=2)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    no_consent = {buyers[0], buyers[1]}
    dnd = {buyers[2]}
    in_quiet_hours = {buyers[3]}
    both_channels = {c for i, c in enumerate(members) if i % 3 == 0}
    policies: dict[str, dict[str, Any]] = {}
    for customer in members + outsiders:
        channels: dict[str, Any] = {"sms": {"consented": customer not in no_consent}}
        if customer in both_channels and customer not in no_consent:
            channels["wechat"] = {"consented": True}
        policy: dict[str, Any] = {"channels": channels, "do_not_disturb": customer in dnd}
        if customer in in_quiet_hours:
            policy["quiet_hours"] = quiet
        policies[customer] = policy

    def profile_known(customer: str) -> bool:
        return system.get("profile", f"/v1/customers/{customer}").status_code == 200

    # profile keeps contact policies of customers it knows: wait until it built them
    wait_for(
        lambda: all(profile_known(c) for c in members + outsiders),
        timeout=40,
        interval=0.5,
        what="profile to know every customer",
    )
    for customer, policy in policies.items():
        response = system.put("profile", f"/v1/customers/{customer}/contact-policy", json=policy)
        assert response.status_code == 200, response.text

    # -- the segment forms from the orders ----------------------------------------------------
    def segment_members() -> list[str] | None:
        response = system.get("segment", "/v1/segments/zhejiang/members", params={"limit": 1000})
        assert response.status_code == 200, response.text
        found = sorted(
            item if isinstance(item, str) else item["customer_id"]
            for item in (response.json()["items"])
        )
        return found if found == members else None

    wait_for(segment_members, timeout=40, interval=0.5, what="the segment to hold the 40 customers")

    # -- campaign's projection learns segment memberships and contact policies --------------
    def projected(customer: str) -> bool:
        response = system.get("campaign", f"/v1/audience/{customer}")
        if response.status_code != 200:
            return False
        body = response.json()
        policy = body["contact_policy"] or {}
        wanted = policies[customer]
        in_segment = ("zhejiang" in body["segments"]) == (customer in members)
        return (
            in_segment
            and policy.get("do_not_disturb") == wanted["do_not_disturb"]
            and {k: v["consented"] for k, v in policy.get("channels", {}).items()}
            == {k: v["consented"] for k, v in wanted["channels"].items()}
            and body["city"] is not None
        )

    wait_for(
        lambda: all(projected(c) for c in members + outsiders),
        timeout=40,
        interval=0.5,
        what="campaign's audience projection to know every customer and policy",
    )

    # -- a campaign with a 20 % holdout on the segment ------------------------------------------
    eligible = [c for c in members if c not in no_consent | dnd]
    body = {
        "name": "浙江 care",
        "purpose": "care",
        "audience": {"segment_id": "zhejiang"},
        "channels": ["wechat", "sms"],
        "content": {
            "template": "{{ city }}的朋友: 券码 {{ coupon }}",
            "variables": {"coupon": "K10"},
        },
        "schedule": {"type": "now"},
        "holdout_share": 0.2,
        "conversion_window_days": 7,
    }
    # the holdout is a hash of campaign and customer ids: take the first campaign whose draw
    # gives both arms a prospect and at least two buyers in the holdout (a draft costs
    # nothing); the test's numbers need both arms populated
    for _attempt in range(40):
        response = system.post("campaign", "/v1/campaigns", json=body)
        assert response.status_code == 201, response.text
        campaign_id = response.json()["campaign_id"]
        holdout = [c for c in eligible if _bucket(campaign_id, c) < 0.2]
        treated = [c for c in eligible if c not in holdout]
        if (
            len([c for c in holdout if c in buyers]) >= 2
            and any(c in prospects for c in holdout)
            and any(c in prospects for c in treated)
            and buyers[3] in treated
        ):
            break
    else:
        pytest.fail("no campaign draw split the customers usefully")
    assert response.json()["status"] == "draft"

    launched = system.post("campaign", f"/v1/campaigns/{campaign_id}/launch")
    assert launched.status_code == 200, launched.text
    result = launched.json()
    assert result["status"] == "running"
    assert result["already_launched"] is False
    assert result["targeted"] == len(members) == 40
    assert result["holdout"] == len(holdout)
    assert result["sent"] == len(treated)
    assert result["deferred"] == 1
    assert result["excluded"] == {"no_consent": 2, "do_not_disturb": 1}

    # -- one message request per treated customer, none for anybody else ------------------------
    messages = system.messages(campaign_id, expect=len(treated), timeout=30)
    by_customer = {m.data.customer_id: m for m in messages}
    assert len(messages) == len(treated)
    assert sorted(by_customer) == sorted(treated)
    for customer, message in by_customer.items():
        if customer in both_channels:
            assert (message.data.channel, message.data.fallback_channels) == ("wechat", ["sms"])
        else:
            assert (message.data.channel, message.data.fallback_channels) == ("sms", [])
        assert message.data.content == "杭州市的朋友: 券码 K10"
        assert (message.data.not_before is not None) == (customer in in_quiet_hours)
    sent_at = {m.occurred_at for m in messages}
    assert len(sent_at) == 1  # one chunk: every entry has the same entry time
    send_time = sent_at.pop()
    assert send_time >= start

    again = system.post("campaign", f"/v1/campaigns/{campaign_id}/launch")
    assert again.status_code == 200, again.text
    assert again.json()["already_launched"] is True

    # -- orders after the send ------------------------------------------------------------------
    after = datetime.now(UTC)
    assert after >= send_time
    before_send = send_time - timedelta(hours=1)
    t_buyers = [c for c in treated if c in buyers and c not in in_quiet_hours]
    h_buyers = [c for c in holdout if c in buyers]
    t_prospect = next(c for c in treated if c in prospects)
    h_prospect = next(c for c in holdout if c in prospects)
    (t_one, t_two, t_partial, t_refunded, t_outside, t_unpaid, t_cancelled) = t_buyers[:7]
    h_one, h_outside = h_buyers[:2]

    def later(seconds: int) -> datetime:
        return after + timedelta(seconds=seconds)

    counted = {
        f"{t_one}-2",
        f"{t_two}-2",
        f"{t_two}-3",
        f"{t_partial}-2",
        f"{h_one}-2",
        f"{t_prospect}-1",
        f"{h_prospect}-1",
    }
    posted = [
        # treated, converted: one order of 250.00
        _order(f"{t_one}-2", t_one, status="paid", amount="250.00", at=later(1)),
        # treated, converted once with two orders: 100.00 + 60.50
        _order(f"{t_two}-2", t_two, status="paid", amount="100.00", at=later(2)),
        _order(f"{t_two}-3", t_two, status="shipped", amount="60.50", at=later(3)),
        # treated, converted with a partial refund: 300.00 - 100.00
        _order(
            f"{t_partial}-2",
            t_partial,
            status="partially_refunded",
            amount="300.00",
            refunded="100.00",
            at=later(4),
        ),
        # treated: paid, then fully refunded (the newer version wins): not converted
        _order(f"{t_refunded}-2", t_refunded, status="paid", amount="80.00", at=later(5)),
        _order(
            f"{t_refunded}-2",
            t_refunded,
            status="refunded",
            amount="80.00",
            refunded="80.00",
            at=later(5),
            updated_at=later(6),
        ),
        # treated: an order paid an hour before the send arrives late: outside the window
        _order(f"{t_outside}-2", t_outside, status="paid", amount="500.00", at=before_send),
        # treated: placed but unpaid, and one cancelled: no valid purchase
        _order(f"{t_unpaid}-2", t_unpaid, status="created", amount="70.00", at=later(7)),
        _order(f"{t_cancelled}-2", t_cancelled, status="cancelled", amount="90.00", at=later(8)),
        # treated prospect pays the order placed before the send: converted, not returning
        {
            **first_orders[t_prospect],
            "status": "paid",
            "paid_at": _iso(later(9)),
            "updated_at": _iso(later(9)),
        },
        # holdout: one converts with 120.00, one bought only before the send
        _order(f"{h_one}-2", h_one, status="completed", amount="120.00", at=later(10)),
        _order(
            f"{h_outside}-2",
            h_outside,
            status="paid",
            amount="400.00",
            at=before_send - timedelta(hours=1),
        ),
        # holdout prospect pays: converted, not returning
        {
            **first_orders[h_prospect],
            "status": "paid",
            "paid_at": _iso(later(11)),
            "updated_at": _iso(later(11)),
        },
        # excluded (no consent) and outside the audience: they count nowhere
        _order(f"{buyers[0]}-2", buyers[0], status="paid", amount="999.00", at=later(12)),
        _order(
            f"{outsiders[0]}-2",
            outsiders[0],
            status="paid",
            amount="999.00",
            at=later(13),
            province="江苏省",
            city="南京市",
        ),
    ]
    # what must not count goes first, so the report's match below comes after it arrived
    for order in sorted(posted, key=lambda o: o["order_id"] in counted):
        _post_order(system, order)

    # -- a gateway's receipts -------------------------------------------------------------------
    receipts = [
        *[(t, "delivered") for t in treated[:6]],
        (treated[0], "delivered"),  # a repeated receipt counts once
        (treated[6], "failed"),
        *[(t, "opened") for t in treated[:3]],
        (treated[0], "clicked"),
    ]
    publisher = Publisher(system.bootstrap_servers, system.namespace)
    try:
        publisher.publish_all(
            (
                topics.CAMPAIGN_RECEIPTS,
                customer,
                MessageReceiptRecordedEvent(
                    source="test-gateway",
                    key=customer,
                    data=MessageReceipt(
                        message_id=by_customer[customer].data.message_id,
                        campaign_id=campaign_id,
                        customer_id=customer,
                        channel=by_customer[customer].data.channel,
                        status=status,
                        at=datetime.now(UTC),
                    ),
                )
                .model_dump_json()
                .encode(),
            )
            for customer, status in receipts
        )
    finally:
        publisher.close()

    # -- the report, by hand ----------------------------------------------------------------------
    converted = {t_one, t_two, t_partial, t_prospect, h_one, h_prospect}
    revenue = {
        t_one: Decimal("250.00"),
        t_two: Decimal("160.50"),
        t_partial: Decimal("200.00"),
        t_prospect: Decimal("88.00"),
        h_one: Decimal("120.00"),
        h_prospect: Decimal("88.00"),
    }
    returning = set(buyers)  # a paid order before the send; prospects had none
    treatment = _group(treated, converted, revenue, returning)
    control = _group(holdout, converted, revenue, returning)
    n1, x1 = len(treated), len([c for c in treated if c in converted])
    n0, x0 = len(holdout), len([c for c in holdout if c in converted])
    p1, p0 = x1 / n1, x0 / n0
    (l1, u1), (l0, u0) = _wilson(x1, n1), _wilson(x0, n0)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x0 - 1 / n0)
    t_revenue = Decimal("250.00") + Decimal("160.50") + Decimal("200.00") + Decimal("88.00")
    c_revenue = Decimal("120.00") + Decimal("88.00")
    expected = {
        "campaign_id": campaign_id,
        "status": "running",
        "final": False,
        "conversion_window_days": 7,
        "currency": "CNY",
        "targeted": 40,
        "excluded": {"no_consent": 2, "do_not_disturb": 1},
        "holdout": len(holdout),
        "sent": len(treated),
        "deferred": 1,
        "delivered": 6,
        "failed": 1,
        "opened": 3,
        "clicked": 1,
        "unsubscribed": 0,
        "treatment": treatment,
        "control": control,
        "uplift": {
            "absolute": pytest.approx(p1 - p0),
            "absolute_ci95": pytest.approx(
                [
                    p1 - p0 - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2),
                    p1 - p0 + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2),
                ]
            ),
            "relative": pytest.approx(p1 / p0 - 1),
            "relative_ci95": pytest.approx(
                [
                    math.exp(math.log(p1 / p0) - Z95 * se) - 1,
                    math.exp(math.log(p1 / p0) + Z95 * se) - 1,
                ]
            ),
            "incremental_revenue_per_customer": str(
                (t_revenue / n1 - c_revenue / n0).quantize(CENT)
            ),
        },
        "revenue_per_targeted_customer": str((t_revenue / 40).quantize(CENT)),
    }
    assert treatment["revenue"] == "698.50"
    assert control["revenue"] == "208.00"
    assert (treatment["converted"], control["converted"]) == (4, 2)
    assert treatment["returning_customers"] == len([c for c in treated if c in buyers])
    assert treatment["returning_converted"] == 3
    assert control["returning_converted"] == 1

    def comparable(report: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in report.items() if k in expected}

    def report() -> dict[str, Any] | None:
        response = system.get("campaign", f"/v1/campaigns/{campaign_id}/report")
        assert response.status_code == 200, response.text
        body = response.json()
        return body if comparable(body) == expected else None

    try:
        final = wait_for(report, timeout=40, interval=0.5, what="the report to match")
    except AssertionError:
        body = system.get("campaign", f"/v1/campaigns/{campaign_id}/report").json()
        assert comparable(body) == expected
        raise
    # the orders outside the window reached campaign too (its projection counts them), and
    # the report still matches
    for customer in (t_outside, h_outside):
        wait_for(
            lambda c=customer: system.get("campaign", f"/v1/audience/{c}").json()["frequency"] == 2,
            timeout=20,
            what=f"campaign to see the second order of {customer}",
        )
    again_body = system.get("campaign", f"/v1/campaigns/{campaign_id}/report").json()
    assert comparable(again_body) == expected
    closes = datetime.fromisoformat(final["window_closes_at"])
    assert closes == send_time + timedelta(days=7)
