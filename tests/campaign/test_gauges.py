"""Campaign's business gauges: sends, holdout and conversions per arm, on /metrics."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import generate_latest

from services.campaign.gauges import business_gauges
from services.campaign.launch import launch
from services.campaign.projection import apply_orders
from shared.business_metrics import BUSINESS
from shared.db import Database
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


def test_sends_holdout_and_conversions_per_campaign(db: Database) -> None:
    customers = [f"g{i:02d}" for i in range(20)]
    feed(db, [e for c in customers for e in (segment_event(c, segments=["s1"]), policy_event(c))])
    campaign_id = make_campaign(db, holdout_share=0.5, conversion_window_days=7)
    draft_id = make_campaign(db)  # never launched: not reported
    launch(db, campaign_id, settings(), now=fixed())
    got = entries(db, campaign_id)
    treated = sorted(c for c, e in got.items() if e.outcome == "sent")
    held = sorted(c for c, e in got.items() if e.outcome == "holdout")
    assert treated and held
    with db.unit_of_work() as session:
        apply_orders(
            session,
            [
                order_event("a", treated[0], NOW + DAY, "10.00"),
                order_event("b", treated[-1], NOW + 2 * DAY, "10.00"),
                order_event("c", held[0], NOW + DAY, "10.00"),
                order_event("late", held[-1], NOW + 9 * DAY, "10.00"),  # after the window
            ],
        )
    with db.sessions() as session:
        families = {f.name: f for f in business_gauges(session, NOW + 10 * DAY)}

    assert dict(families["crm_campaign_messages_sent"].samples) == {(campaign_id,): len(treated)}
    assert dict(families["crm_campaign_holdout_customers"].samples) == {(campaign_id,): len(held)}
    assert dict(families["crm_campaign_conversions"].samples) == {
        (campaign_id, "treatment"): 2.0,
        (campaign_id, "control"): 1.0,
    }
    assert all(draft_id not in labels for f in families.values() for labels, _ in f.samples)

    BUSINESS.publish(families.values())
    exposition = generate_latest().decode()
    assert (
        f'crm_campaign_conversions{{arm="treatment",campaign_id="{campaign_id}"}} 2.0' in exposition
    )
    # a campaign launched longer ago than the reporting horizon drops out of the snapshot
    with db.sessions() as session:
        old = {f.name: f for f in business_gauges(session, NOW + 400 * DAY)}
    BUSINESS.publish(old.values())
    assert campaign_id not in generate_latest().decode()
