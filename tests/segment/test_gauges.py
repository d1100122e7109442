"""Segment's business gauges: customers per lifecycle stage and RFM segment, segment sizes."""

from __future__ import annotations

from prometheus_client import generate_latest
from sqlalchemy import text

from services.segment import per_event, rescoring, segment_admin
from services.segment.gauges import business_gauges
from services.segment.schemas import SegmentCreate
from shared.business_metrics import BUSINESS
from tests.segment.helpers import NOW, database, order, recorded


def test_customers_per_stage_and_segment_and_segment_sizes(db_url: str) -> None:
    db = database(db_url)
    try:
        with db.unit_of_work() as session:
            per_event.apply_messages(
                session,
                [
                    recorded(order("o1", "alice", days_ago=2, amount="300.00")),
                    recorded(order("o2", "alice", days_ago=20, amount="200.00")),
                    recorded(order("o3", "bob", days_ago=100, amount="50.00", province="广东省")),
                    recorded(order("o4", "carol", days_ago=1, amount="10.00", status="created")),
                    recorded(order("o5", "dave", days_ago=40, amount="80.00", province="广东省")),
                ],
                NOW,
            )
            body = SegmentCreate.model_validate(
                {"name": "广东", "rule": {"field": "province", "op": "eq", "value": "广东省"}}
            )
            segment_admin.create_segment(session, "gd", body.name, None, body.rule)
            rescoring.rescore_all(session, NOW, recompute=False)  # as the route does
        with db.sessions() as session:
            gauges = business_gauges(session)
            stored = session.execute(
                text(
                    "SELECT rfm_segment, count(*) FROM customer_scores "
                    "WHERE rfm_segment IS NOT NULL GROUP BY rfm_segment"
                )
            ).all()
    finally:
        db.dispose()
    families = {f.name: dict(f.samples) for f in gauges}

    assert families["crm_customers_by_lifecycle_stage"] == {
        ("new",): 1.0,  # alice: first purchase 20 days ago, inside the active window
        ("silent",): 1.0,  # dave, 40 days
        ("sleeping",): 1.0,  # bob, 100 days
        ("prospect",): 1.0,  # carol: an unpaid order only
    }
    assert families["crm_customers_by_rfm_segment"] == {(k,): float(n) for k, n in stored}
    assert sum(families["crm_customers_by_rfm_segment"].values()) == 3  # the three buyers
    assert families["crm_segment_members"] == {("gd",): 2.0}

    BUSINESS.publish(gauges)
    exposition = generate_latest().decode()
    assert 'crm_customers_by_lifecycle_stage{lifecycle_stage="sleeping"} 1.0' in exposition
    assert 'crm_segment_members{segment_id="gd"} 2.0' in exposition
