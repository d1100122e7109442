"""The report: every number computed by hand from a small, fully known campaign."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from services.campaign import service
from services.campaign.launch import launch
from services.campaign.projection import apply_orders, apply_receipts
from services.campaign.report import build_report
from services.campaign.stats import newcombe_difference, wilson
from shared.db import Database
from shared.events import MessageReceipt, MessageReceiptRecordedEvent
from tests.campaign.factories import (
    NOW,
    entries,
    feed,
    fixed,
    make_campaign,
    order_event,
    policy_event,
    segment_event,
    settings,
)

DAY = timedelta(days=1)


def receipt(message_id: str, customer_id: str, status: str) -> MessageReceiptRecordedEvent:
    return MessageReceiptRecordedEvent(
        source="gateway",
        key=customer_id,
        data=MessageReceipt(message_id=message_id, customer_id=customer_id, status=status, at=NOW),
    )


def test_report_numbers_equal_the_hand_computed_ones(db: Database) -> None:
    customers = [f"r{i:02d}" for i in range(30)]
    feed(db, [e for c in customers for e in (segment_event(c, segments=["s1"]), policy_event(c))])
    feed(db, [segment_event("nope", segments=["s1"])])  # no policy: excluded, no_consent
    campaign_id = make_campaign(db, holdout_share=0.5, conversion_window_days=7)
    launch(db, campaign_id, settings(launch_chunk_size=7), now=fixed())
    got = entries(db, campaign_id)
    t = sorted(c for c, e in got.items() if e.outcome == "sent")
    h = sorted(c for c, e in got.items() if e.outcome == "holdout")
    assert len(t) >= 4 and len(h) >= 2 and len(t) + len(h) == 30

    with db.unit_of_work() as session:
        apply_orders(
            session,
            [
                order_event("t0-prior", t[0], NOW - 10 * DAY, "50.00"),  # returning
                order_event("t0-in", t[0], NOW + DAY, "100.00"),  # converted
                order_event("t1-late", t[1], NOW + 8 * DAY, "80.00"),  # after the window
                order_event(
                    "t2-a",
                    t[2],
                    NOW + 2 * DAY,
                    "30.00",
                    status="partially_refunded",
                    refunded="10.00",
                ),
                order_event("t2-b", t[2], NOW + 3 * DAY, "10.00"),
                order_event("t3-x", t[3], NOW + DAY, "70.00", status="cancelled"),
                order_event("h0-prior", h[0], NOW - 20 * DAY, "15.00"),
                order_event("h0-in", h[0], NOW + 5 * DAY, "60.00"),
                order_event("h1-prior", h[1], NOW - 30 * DAY, "25.00"),
                order_event("x-in", "nope", NOW + DAY, "999.00"),  # excluded: not measured
            ],
        )
        m = {c: got[c].message_id for c in t}
        apply_receipts(
            session,
            [
                receipt(m[t[0]], t[0], "delivered"),
                receipt(m[t[0]], t[0], "delivered"),
                receipt(m[t[0]], t[0], "opened"),
                receipt(m[t[0]], t[0], "clicked"),
                receipt(m[t[1]], t[1], "delivered"),
                receipt(m[t[2]], t[2], "failed"),
                receipt("unknown-message", t[3], "delivered"),
            ],
        )

    with db.sessions() as session:
        campaign = service.get_campaign(session, campaign_id)
        early = build_report(session, campaign, NOW + DAY)
        late = build_report(session, campaign, NOW + 8 * DAY)

    nt, nh = len(t), len(h)
    assert early.final is False and late.final is True
    assert early.window_closes_at == NOW + 7 * DAY
    r = late
    assert (r.targeted, r.sent, r.holdout, r.deferred) == (31, nt, nh, 0)
    assert r.excluded == {"no_consent": 1}
    assert (r.delivered, r.failed, r.opened, r.clicked, r.unsubscribed) == (2, 1, 1, 1, 0)
    assert r.currency == "CNY"
    # treatment: t0 (100) and t2 (20 + 10) converted; t1 too late, t3 cancelled
    assert (r.treatment.customers, r.treatment.converted) == (nt, 2)
    assert r.treatment.conversion_rate == pytest.approx(2 / nt)
    assert r.treatment.revenue == "130.00"
    assert r.treatment.revenue_per_customer == str((Decimal(130) / nt).quantize(Decimal("0.01")))
    assert (r.treatment.returning_customers, r.treatment.returning_converted) == (1, 1)
    assert r.treatment.returning_customer_rate == 1.0
    # control: h0 converted (60); h0 and h1 had bought before
    assert (r.control.customers, r.control.converted) == (nh, 1)
    assert r.control.revenue == "60.00"
    assert (r.control.returning_customers, r.control.returning_converted) == (2, 1)
    assert r.control.returning_customer_rate == 0.5
    assert r.uplift.absolute == pytest.approx(2 / nt - 1 / nh)
    assert r.uplift.relative == pytest.approx((2 / nt) / (1 / nh) - 1)
    assert r.uplift.absolute_ci95 == pytest.approx(newcombe_difference(2, nt, 1, nh))
    assert r.treatment.conversion_rate_ci95 == pytest.approx(wilson(2, nt))
    incremental = Decimal(130) / nt - Decimal(60) / nh
    assert r.uplift.incremental_revenue_per_customer == str(incremental.quantize(Decimal("0.01")))
    # revenue per targeted customer: 130.00 over the 31 targeted
    assert r.revenue_per_targeted_customer == "4.19"
