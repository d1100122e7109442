"""Inline audiences on the predictive CLV segment.changed carries (p_alive, predicted CLV)."""

from __future__ import annotations

from decimal import Decimal

from services.campaign.launch import launch
from services.campaign.repository import Projections
from shared.db import Database
from shared.events import PredictionSnapshot, SegmentChangedEvent
from tests.campaign.factories import (
    NOW,
    consume,
    make_campaign,
    policy_event,
    segment_event,
    settings,
)


def predicted(
    customer_id: str, p_alive: float | None, percentile: float = 50.0
) -> SegmentChangedEvent:
    event = segment_event(customer_id)
    if p_alive is None:
        return event
    snapshot = PredictionSnapshot(
        fit_id=1,
        currency="CNY",
        as_of=NOW,
        p_alive=p_alive,
        expected_purchases_30d=0.1,
        expected_purchases_90d=0.3,
        expected_purchases_365d=1.0,
        expected_order_value=Decimal("80.00"),
        predicted_clv=Decimal("120.50"),
        predicted_clv_percentile=percentile,
    )
    return event.model_copy(
        update={"data": event.data.model_copy(update={"predictions": snapshot})}
    )


def test_audiences_select_on_p_alive_and_clv_percentile(db: Database) -> None:
    events = [
        *[predicted(f"gone{i}", 0.1, percentile=10.0 * i) for i in range(6)],
        *[predicted(f"alive{i}", 0.9, percentile=85.0) for i in range(4)],
        predicted("unknown", None),  # no prediction published: never matches
    ]
    consents = [policy_event(e.data.customer_id, {"sms": True}) for e in events]
    consume(db, [*events, *consents])
    with db.sessions() as session:
        row = Projections(session).audience_member("gone1")
        assert row is not None
        assert row.p_alive == 0.1 and row.predicted_clv_e4 == 1_205_000
        assert row.predicted_clv_percentile == 10.0

    likely_gone = make_campaign(
        db,
        audience={"rule": {"field": "p_alive", "op": "lt", "value": 0.3}},
        channels=["sms"],
    )
    top = make_campaign(
        db,
        audience={"rule": {"field": "predicted_clv_percentile", "op": "gte", "value": 80}},
        channels=["sms"],
    )
    valuable = make_campaign(
        db,
        audience={"rule": {"field": "predicted_clv", "op": "gte", "value": "100"}},
        channels=["sms"],
    )
    assert launch(db, likely_gone, settings()).tally.targeted == 6
    assert launch(db, top, settings()).tally.targeted == 4
    assert launch(db, valuable, settings()).tally.targeted == 10

    # a later change without predictions (the currency's fit published none) clears them
    consume(db, [predicted("gone1", None)])
    with db.sessions() as session:
        row = Projections(session).audience_member("gone1")
        assert row is not None and row.p_alive is None and row.predicted_clv_e4 is None
