"""Issue 10, done when: a fake clock moved past a day boundary, and every service follows.

The four real processes share a clock offset file (``shared.clock``, honoured outside
production). The clock starts an hour before midnight in the policy timezone
(Asia/Shanghai); a customer whose last purchase was 30 days before is ``active``
everywhere. The clock then jumps one second past midnight: within a minute segment has
moved them to ``silent`` (its day sweep), profile and campaign have followed from the
``segment.changed`` event, and a ``lifecycle_transition`` campaign (active -> silent)
has entered them exactly once. A customer who bought 5 days before stays ``active``.
Before the jump, a ``first_purchase`` welcome enters a new customer whose first two
orders arrive in one batch request exactly once, with the province and city they
shipped to in the message. At the end, a refund recorded two days before: ``as_of`` a
plain date before it still counts the purchase (valid time), after it does not, and an
unencoded ``+`` offset is read as intended.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devtools.broker import EmbeddedBroker
from devtools.testing import unique, wait_for
from shared import clock, topics
from shared.events import SegmentChangedEvent
from tests.e2e.system import RunningSystem, running_system

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

ZONE = ZoneInfo("Asia/Shanghai")


def _next_midnight(after: datetime) -> datetime:
    local = after.astimezone(ZONE)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), ZONE)
    return midnight.astimezone(UTC)


@pytest.fixture
def offset_file(tmp_path: Path) -> Path:
    return tmp_path / "clock-offset"


@pytest.fixture
def clocked_system(
    broker: EmbeddedBroker, tmp_path: Path, offset_file: Path
) -> Iterator[RunningSystem]:
    env = {
        clock.OFFSET_FILE_VARIABLE: str(offset_file),
        clock.ENVIRONMENT_VARIABLE: "test",
        # the newcomer's welcome goes out before profile could publish a contact policy
        "CAMPAIGN_ASSUME_CONSENT_WITHOUT_POLICY": "true",
    }
    with running_system(broker, tmp_path, extra_env=env) as running:
        yield running


def _set_fake_now(offset_file: Path, moment: datetime) -> None:
    clock.write_offset(offset_file, (moment - datetime.now(UTC)).total_seconds())


def _order(order_id: str, customer_id: str, paid_at: datetime) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": "paid",
        "created_at": (paid_at - timedelta(minutes=5)).isoformat(),
        "paid_at": paid_at.isoformat(),
        "updated_at": paid_at.isoformat(),
        "currency": "CNY",
        "total_amount": "120.00",
        "refunded_amount": "0.00",
        "channel": "tmall",
        "items": [{"sku": "S-1", "name": "围巾", "unit_price": "120.00", "quantity": 1}],
        "buyer": {"name": "顾客"},
        "shipping": {"province": "浙江省", "city": "杭州市"},
    }


def _stages(system: RunningSystem, customer: str) -> tuple[Any, Any, Any]:
    """The customer's lifecycle stage as segment, profile and campaign tell it."""
    seg = system.get("segment", f"/v1/customers/{customer}/scores")
    prof = system.get("profile", f"/v1/customers/{customer}")
    camp = system.get("campaign", f"/v1/audience/{customer}")
    return (
        seg.json().get("lifecycle_stage") if seg.status_code == 200 else None,
        prof.json()["scores"].get("lifecycle_stage") if prof.status_code == 200 else None,
        camp.json().get("lifecycle_stage") if camp.status_code == 200 else None,
    )


def test_a_day_boundary_moves_stages_everywhere_within_a_minute_and_triggers_once(
    clocked_system: RunningSystem, offset_file: Path
) -> None:
    system = clocked_system
    midnight = _next_midnight(datetime.now(UTC) + timedelta(hours=1))
    _set_fake_now(offset_file, midnight - timedelta(hours=1))
    system.wait_ready(timeout=240)  # four processes start slowly on a loaded machine
    run = unique("day")
    lapsing, recent = f"{run}-lapsing", f"{run}-recent"
    local_day = (midnight - timedelta(hours=1)).astimezone(ZONE).date()

    def noon(days_before: int) -> datetime:
        return datetime.combine(
            local_day - timedelta(days=days_before), datetime.min.time(), ZONE
        ) + timedelta(hours=12)

    for order in (
        _order(f"{lapsing}-1", lapsing, noon(60)),
        _order(f"{lapsing}-2", lapsing, noon(30)),  # recency 30 today: active; 31 tomorrow
        _order(f"{recent}-1", recent, noon(70)),
        _order(f"{recent}-2", recent, noon(5)),
    ):
        response = system.post("ingest", "/v1/orders", json=order)
        assert response.status_code == 202, response.text

    wait_for(
        lambda: (
            _stages(system, lapsing) == ("active",) * 3
            and _stages(system, recent) == ("active",) * 3
        ),
        timeout=60,
        interval=0.5,
        what="segment, profile and campaign to agree both customers are active",
    )
    policy = {"channels": {"sms": {"consented": True}}, "do_not_disturb": False}
    for customer in (lapsing, recent):
        response = system.put("profile", f"/v1/customers/{customer}/contact-policy", json=policy)
        assert response.status_code == 200, response.text
    wait_for(
        lambda: system.get("campaign", f"/v1/audience/{lapsing}").json()["contact_policy"],
        timeout=30,
        interval=0.5,
        what="campaign to learn the contact policy",
    )
    response = system.post(
        "campaign",
        "/v1/campaigns",
        json={
            "name": "we miss you",
            "purpose": "reactivation",
            "channels": ["sms"],
            "content": {"template": "{{ city }}的朋友, 好久不见"},
            "trigger": {"type": "lifecycle_transition", "from": "active", "to": "silent"},
        },
    )
    assert response.status_code == 201, response.text
    campaign_id = response.json()["campaign_id"]
    launched = system.post("campaign", f"/v1/campaigns/{campaign_id}/launch")
    assert launched.status_code == 200, launched.text
    assert launched.json()["status"] == "running"
    # nothing has moved yet
    assert _stages(system, lapsing) == ("active",) * 3

    # -- a welcome on the first purchase: two first orders in one batch request ----------
    welcome = system.post(
        "campaign",
        "/v1/campaigns",
        json={
            "name": "welcome",
            "purpose": "care",
            "channels": ["sms"],
            "content": {"template": "{{ province }}{{ city }}的新朋友, 欢迎"},
            "trigger": {"type": "first_purchase"},
        },
    )
    assert welcome.status_code == 201, welcome.text
    welcome_id = welcome.json()["campaign_id"]
    assert system.post("campaign", f"/v1/campaigns/{welcome_id}/launch").status_code == 200
    newcomer = f"{run}-new"
    first_two = [
        _order(f"{newcomer}-1", newcomer, noon(0) - timedelta(hours=2)),
        _order(f"{newcomer}-2", newcomer, noon(0) - timedelta(hours=1)),
    ]
    for order in first_two:
        order["shipping"] = {"province": "江苏省", "city": "南京市"}
    batch = system.post("ingest", "/v1/orders/batch", json={"orders": first_two})
    assert batch.status_code in (200, 202), batch.text
    assert batch.json()["accepted"] == 2, batch.text
    welcomed = system.messages(welcome_id, expect=1, timeout=30)
    assert [(m.data.customer_id, m.data.content) for m in welcomed] == [
        (newcomer, "江苏省南京市的新朋友, 欢迎")
    ]

    # -- the clock jumps one second past midnight -----------------------------------------
    _set_fake_now(offset_file, midnight + timedelta(seconds=1))
    jumped = time.monotonic()
    wait_for(
        lambda: _stages(system, lapsing) == ("silent",) * 3,
        timeout=60,
        interval=0.5,
        what="segment, profile and campaign to agree the lapsing customer is silent",
    )
    assert time.monotonic() - jumped < 60
    assert _stages(system, recent) == ("active",) * 3

    messages = system.messages(campaign_id, expect=1, timeout=30)
    assert [m.data.customer_id for m in messages] == [lapsing]
    assert messages[0].data.content == "杭州市的朋友, 好久不见"

    # later ticks of the sweep (every 15 s) and the same day again change nothing
    time.sleep(20)
    changes: list[SegmentChangedEvent] = system.read(
        topics.SEGMENTS,
        timeout=5,
        predicate=lambda e: e.key == lapsing and e.type == "segment.changed",
    )
    moves = [
        (
            c.data.previous.lifecycle_stage if c.data.previous else None,
            c.data.current.lifecycle_stage,
        )
        for c in changes
        if c.data.current is not None
    ]
    assert moves.count(("active", "silent")) == 1, moves
    again = system.messages(campaign_id, timeout=5)
    assert len(again) == 1
    welcomed_again = system.messages(welcome_id, timeout=5)
    assert len(welcomed_again) == 1  # the two first orders entered the newcomer once

    # -- as_of in valid time, written as people write it --------------------------------
    # the recent customer's second order (paid 5 days before) is refunded 2 days before
    refund = _order(f"{recent}-2", recent, noon(5))
    refund.update(status="refunded", refunded_amount="120.00", updated_at=noon(2).isoformat())
    response = system.post("ingest", "/v1/orders", json=refund)
    assert response.status_code == 202, response.text

    def scores(query: str = "", **params: str) -> dict[str, Any]:
        path = f"/v1/customers/{recent}/scores{query}"
        # a raw query string goes as it is (httpx would replace it with params)
        response = (
            system.get("segment", path, params=params) if params else system.get("segment", path)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    wait_for(lambda: scores()["frequency"] == 1, timeout=60, what="segment to apply the refund")
    before_refund = (local_day - timedelta(days=3)).isoformat()  # a plain date: end of day
    then = scores(as_of=before_refund)
    assert then["frequency"] == 2 and then["policy_version"] == 1
    assert datetime.fromisoformat(then["as_of"]) == datetime.combine(
        local_day - timedelta(days=2), datetime.min.time(), ZONE
    ) - timedelta(microseconds=1)
    assert scores(as_of=(local_day - timedelta(days=2)).isoformat())["frequency"] == 1
    # an unencoded "+" arrives as a space: read as intended
    raw = scores(f"?as_of={before_refund}T23:00:00+08:00")
    assert raw["frequency"] == 2
    bad = system.get("segment", f"/v1/customers/{recent}/scores", params={"as_of": "soon"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "as_of"
