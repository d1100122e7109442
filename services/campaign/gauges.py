"""Campaign's business gauges: per launched campaign, messages sent, customers held out,
and conversions per arm (refreshed by a periodic job, see shared.business_metrics)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.campaign.models import Campaign
from services.campaign.report import build_report
from shared.business_metrics import BUSINESS, GaugeFamily
from shared.events import ensure_aware, utcnow
from shared.runtime import ServiceRuntime

#: campaigns reported: launched within this many days (the report of each costs a query)
RECENT_DAYS = 90
MOST = 50


def business_gauges(session: Session, now: datetime) -> list[GaugeFamily]:
    launched = session.execute(
        select(Campaign)
        .where(Campaign.launched_at.is_not(None))
        .order_by(Campaign.launched_at.desc())
        .limit(MOST)
    ).scalars()
    since = now - timedelta(days=RECENT_DAYS)
    campaigns = [c for c in launched if c.launched_at and ensure_aware(c.launched_at) >= since]
    sent, holdout, converted = [], [], []
    for campaign in campaigns:
        report = build_report(session, campaign, now)
        sent.append(((campaign.campaign_id,), float(report.sent)))
        holdout.append(((campaign.campaign_id,), float(report.holdout)))
        converted.append(((campaign.campaign_id, "treatment"), float(report.treatment.converted)))
        converted.append(((campaign.campaign_id, "control"), float(report.control.converted)))
    return [
        GaugeFamily("crm_campaign_messages_sent", "Messages requested per campaign", ("campaign_id",), tuple(sent)),
        GaugeFamily("crm_campaign_holdout_customers", "Customers held out per campaign", ("campaign_id",), tuple(holdout)),
        GaugeFamily(
            "crm_campaign_conversions",
            "Customers who bought within the conversion window, per campaign and arm",
            ("campaign_id", "arm"),
            tuple(converted),
        ),
    ]  # fmt: skip


def refresh(runtime: ServiceRuntime) -> None:
    with runtime.db.sessions() as session:
        BUSINESS.publish(business_gauges(session, utcnow()))
