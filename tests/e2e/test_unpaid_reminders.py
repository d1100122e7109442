"""Issue 10, item 4 through the real processes: an ``unpaid_order`` campaign started after
orders became overdue reminds those that became overdue within its lookback (default
24 h) exactly once, and never one that was paid meanwhile or one older than the lookback.

Orders are posted to ingest as any shop would; campaign learns them from
``crm.orders.v1`` and its scheduler (every second here) decides the occurrences.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import EmbeddedBroker
from devtools.testing import unique, wait_for
from tests.e2e.system import RunningSystem, running_system

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
def system(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[RunningSystem]:
    env = {
        "CAMPAIGN_SCHEDULER_INTERVAL_SECONDS": "1",
        # the reminders go out without waiting for profile to publish contact policies
        "CAMPAIGN_ASSUME_CONSENT_WITHOUT_POLICY": "true",
    }
    with running_system(broker, tmp_path, extra_env=env) as running:
        yield running


def _order(order_id: str, customer_id: str, created_at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": "created",
        "created_at": created_at.isoformat(),
        "updated_at": created_at.isoformat(),
        "currency": "CNY",
        "total_amount": "88.00",
        "channel": "tmall",
        "shipping": {"province": "浙江省", "city": "杭州市"},
        **extra,
    }


def test_unpaid_orders_overdue_before_the_start_are_reminded_within_the_lookback_once(
    system: RunningSystem,
) -> None:
    system.wait_ready(timeout=240)
    run = unique("unpaid")
    now = datetime.now(UTC)
    overdue, too_old, paid = f"{run}-overdue", f"{run}-too-old", f"{run}-paid"
    orders = [
        _order(f"{overdue}-o", overdue, now - timedelta(hours=5)),  # overdue 4 h at start
        _order(f"{too_old}-o", too_old, now - timedelta(hours=30)),  # overdue 29 h > 24 h
        _order(f"{paid}-o", paid, now - timedelta(hours=5)),
    ]
    for order in orders:
        response = system.post("ingest", "/v1/orders", json=order)
        assert response.status_code == 202, response.text
    # the third is paid (a newer version) before the campaign starts
    paid_version = _order(
        f"{paid}-o",
        paid,
        now - timedelta(hours=5),
        status="paid",
        paid_at=(now - timedelta(minutes=1)).isoformat(),
        updated_at=(now - timedelta(minutes=1)).isoformat(),
    )
    response = system.post("ingest", "/v1/orders", json=paid_version)
    assert response.status_code == 202, response.text
    wait_for(
        lambda: all(
            system.get("campaign", f"/v1/audience/{c}").status_code == 200
            for c in (overdue, too_old, paid)
        ),
        timeout=60,
        interval=0.5,
        what="campaign to learn the three customers from the order topic",
    )
    time.sleep(2)  # the paid version follows its created one on the same partition

    created = system.post(
        "campaign",
        "/v1/campaigns",
        json={
            "name": "pay reminder",
            "purpose": "care",
            "channels": ["sms"],
            "content": {"template": "您在{{ city }}的订单还未付款"},
            "trigger": {"type": "unpaid_order", "older_than_hours": 1},
        },
    )
    assert created.status_code == 201, created.text
    campaign_id = created.json()["campaign_id"]
    launched = system.post("campaign", f"/v1/campaigns/{campaign_id}/launch")
    assert launched.status_code == 200, launched.text

    reminded = system.messages(campaign_id, expect=1, timeout=60)
    assert [m.data.customer_id for m in reminded] == [overdue]
    assert reminded[0].data.content == "您在杭州市的订单还未付款"

    # further scheduler passes (every second) remind nobody again, nor the other two
    time.sleep(5)
    again = system.messages(campaign_id, timeout=5)
    assert [m.data.customer_id for m in again] == [overdue]
    print(
        f"unpaid_order: 3 orders (overdue 4 h, overdue 29 h, paid), "
        f"{len(again)} reminder(s): {[m.data.customer_id for m in again]}"
    )
