"""End to end on the real broker: projections from topics, a launch killed mid-way and
relaunched, messages on crm.campaign.messages.v1 (each customer at most once), orders and
receipts flowing back, and a report whose every number is computed by hand here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from devtools.testing import read_topic, wait_for
from services.campaign.app import create_app
from services.campaign.models import AudienceMember
from services.campaign.targeting import in_holdout
from shared import topics
from shared.bus import Publisher
from shared.events import MessageReceipt, MessageReceiptRecordedEvent, utcnow
from tests.campaign.factories import broker_settings, order_event, policy_event, segment_event
from tests.conftest import ADMIN_KEY, api_client

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"X-API-Key": ADMIN_KEY}
DAY = timedelta(days=1)

CRASHING_LAUNCH = textwrap.dedent(
    """
    import os, sys
    from services.campaign.config import Settings
    from services.campaign.launch import launch
    from shared.db import Database

    def die(chunks):
        if chunks == 3:
            os._exit(137)  # the process dies: no cleanup, no further commit

    launch(Database.from_url(sys.argv[1]), sys.argv[2], Settings(launch_chunk_size=5), after_chunk=die)
    """
)


@pytest.mark.kafka
def test_launch_crash_relaunch_and_hand_computed_report(
    broker, namespace, sqlite_url, tmp_path: Path
) -> None:
    settings = broker_settings(broker, namespace, sqlite_url, tmp_path, launch_chunk_size=5)
    customers = [f"e{i:02d}" for i in range(40)]
    publisher = Publisher(broker.bootstrap_servers, namespace)
    with api_client(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        for c in customers:
            publisher.send_event(topics.SEGMENTS, segment_event(c, segments=["loyal_zj"]))
            publisher.send_event(topics.PROFILES, policy_event(c, {"sms": True}))
        publisher.send_event(topics.SEGMENTS, segment_event("silent-one", segments=["loyal_zj"]))
        publisher.producer.flush()

        def projected() -> bool:
            with runtime.db.sessions() as session:
                rows = session.scalar(select(func.count()).select_from(AudienceMember))
                policies = session.scalar(
                    select(func.count())
                    .select_from(AudienceMember)
                    .where(AudienceMember.contact_policy.is_not(None))
                )
            return rows == 41 and policies == 40

        wait_for(projected, timeout=40, what="41 customers projected, 40 with a policy")

        body = {
            "name": "loyal Zhejiang buyers",
            "purpose": "promotion",
            "audience": {"segment_id": "loyal_zj"},
            "channels": ["sms"],
            "content": {"template": "{{rfm_segment}}: 9折 {{code}}", "variables": {"code": "Z9"}},
            "holdout_share": 0.2,
            "conversion_window_days": 7,
        }
        campaign_id = client.post("/v1/campaigns", json=body, headers=HEADERS).json()["campaign_id"]
        base = utcnow()

        # a launch process dies after three chunks of five customers were committed
        crashed = subprocess.run(
            [sys.executable, "-c", CRASHING_LAUNCH, sqlite_url, campaign_id], cwd=ROOT
        )
        assert crashed.returncode == 137
        relaunch = client.post(f"/v1/campaigns/{campaign_id}/launch", headers=HEADERS).json()
        assert relaunch["resumed"] is True
        again = client.post(f"/v1/campaigns/{campaign_id}/launch", headers=HEADERS)
        assert again.json()["already_launched"] is True

        holdout = sorted(c for c in customers if in_holdout(campaign_id, c, 0.2))
        treated = sorted(set(customers) - set(holdout))
        assert len(holdout) >= 2 and len(treated) >= 3
        messages = read_topic(
            broker.bootstrap_servers,
            namespace + topics.CAMPAIGN_MESSAGES,
            expect=len(treated) + 1,  # one more than due: proves there is no extra
            timeout=8,
        )
        assert Counter(m.data.customer_id for m in messages) == Counter(treated)
        assert all(m.data.content == "champions: 9折 Z9" for m in messages)
        message_of = {m.data.customer_id: m.data.message_id for m in messages}

        t0, t1, t2 = treated[:3]
        h0, h1 = holdout[:2]
        for event in (
            order_event("o-t0-before", t0, base - 30 * DAY, "20.00"),
            order_event("o-t0", t0, base + DAY, "100.00"),
            order_event("o-t1", t1, base + 10 * DAY, "50.00"),  # outside the 7-day window
            order_event("o-t2", t2, base + DAY, "80.00", status="refunded", refunded="80.00"),
            order_event("o-h0", h0, base + 2 * DAY, "40.00"),
            order_event("o-h1", h1, None, "30.00", status="created"),  # never paid
            order_event("o-x", "silent-one", base + DAY, "500.00"),  # excluded: not measured
        ):
            publisher.send_event(topics.ORDERS, event)
        for customer_id, status in ((t0, "delivered"), (t0, "opened"), (t1, "failed")):
            publisher.send_event(
                topics.CAMPAIGN_RECEIPTS,
                MessageReceiptRecordedEvent(
                    source="gateway",
                    key=customer_id,
                    data=MessageReceipt(
                        message_id=message_of[customer_id],
                        campaign_id=campaign_id,
                        customer_id=customer_id,
                        status=status,
                        at=utcnow(),
                    ),
                ),
            )
        publisher.producer.flush()

        def report() -> dict | None:
            r = client.get(f"/v1/campaigns/{campaign_id}/report", headers=HEADERS).json()
            done = r["treatment"]["returning_customers"] == 1 and r["control"]["converted"] == 1
            return r if done and r["failed"] == 1 and r["opened"] == 1 else None

        r = wait_for(report, timeout=30, what="orders and receipts in the report")
    publisher.close()

    nt, nh = len(treated), len(holdout)
    assert (r["targeted"], r["sent"], r["holdout"]) == (41, nt, nh)
    assert r["excluded"] == {"no_consent": 1}
    assert (r["delivered"], r["failed"], r["opened"], r["clicked"]) == (1, 1, 1, 0)
    assert r["final"] is False  # the 7-day window is still open
    assert r["treatment"]["converted"] == 1  # t0 only: t1 too late, t2 refunded
    assert r["treatment"]["revenue"] == "100.00"
    assert r["treatment"]["conversion_rate"] == pytest.approx(1 / nt)
    assert r["treatment"]["returning_converted"] == 1
    assert r["control"]["revenue"] == "40.00"
    assert r["control"]["conversion_rate"] == pytest.approx(1 / nh)
    assert r["control"]["returning_customers"] == 0
    assert r["uplift"]["absolute"] == pytest.approx(1 / nt - 1 / nh)
    assert r["uplift"]["relative"] == pytest.approx(nh / nt - 1)
    assert r["revenue_per_targeted_customer"] == str((Decimal(100) / 41).quantize(Decimal("0.01")))
