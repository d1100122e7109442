"""Segment's business gauges: customers per lifecycle stage and per RFM segment, and the
size of each custom segment (refreshed by a periodic job, see shared.business_metrics)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.segment.models import CustomerScore, CustomSegment
from shared.business_metrics import BUSINESS, GaugeFamily
from shared.runtime import ServiceRuntime


def business_gauges(session: Session) -> list[GaugeFamily]:
    stages = session.execute(
        select(CustomerScore.lifecycle_stage, func.count())
        .where(CustomerScore.lifecycle_stage.is_not(None))
        .group_by(CustomerScore.lifecycle_stage)
    ).all()
    segments = session.execute(
        select(CustomerScore.rfm_segment, func.count())
        .where(CustomerScore.rfm_segment.is_not(None))
        .group_by(CustomerScore.rfm_segment)
    ).all()
    custom = session.execute(select(CustomSegment.segment_id, CustomSegment.member_count)).all()
    return [
        GaugeFamily(
            "crm_customers_by_lifecycle_stage",
            "Scored customers per lifecycle stage",
            ("lifecycle_stage",),
            tuple(((str(stage),), float(n)) for stage, n in stages),
        ),
        GaugeFamily(
            "crm_customers_by_rfm_segment",
            "Scored customers per named RFM segment",
            ("rfm_segment",),
            tuple(((str(name),), float(n)) for name, n in segments),
        ),
        GaugeFamily(
            "crm_segment_members",
            "Members of each custom segment",
            ("segment_id",),
            tuple(((str(sid),), float(n)) for sid, n in custom),
        ),
    ]


def refresh(runtime: ServiceRuntime) -> None:
    with runtime.db.sessions() as session:
        BUSINESS.publish(business_gauges(session))
