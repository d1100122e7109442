"""Campaign never acts on predictive CLV numbers segment may no longer publish.

A customer's segment.changed is published only when their own scores or memberships
change, so a prediction copied from it goes stale (a later run moved it) or outlives its
withdrawal (the fit became insufficient_data). Audiences reach predictions through custom
segments, whose memberships segment publishes after every CLV run.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.campaign.launch import launch
from services.campaign.projection_repository import Projections
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


def predicted(customer_id: str, p_alive: float, segments: list[str]) -> SegmentChangedEvent:
    event = segment_event(customer_id)
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
        predicted_clv_percentile=50.0,
    )
    data = event.data.model_copy(update={"predictions": snapshot, "segments": segments})
    return event.model_copy(update={"data": data})


@pytest.mark.parametrize("field", ["p_alive", "predicted_clv", "predicted_clv_percentile"])
def test_inline_prediction_rules_are_refused(db: Database, field: str) -> None:
    # a prediction copied from the last segment.changed may be stale or withdrawn since
    with pytest.raises(ValidationError, match=field):
        make_campaign(db, audience={"rule": {"field": field, "op": "gte", "value": 0}})


def test_audiences_reach_predictions_through_segment_memberships(db: Database) -> None:
    events = [
        *[predicted(f"gone{i}", 0.1, ["likely-gone"]) for i in range(3)],
        *[predicted(f"alive{i}", 0.9, []) for i in range(2)],
    ]
    consume(db, [*events, *(policy_event(e.data.customer_id, {"sms": True}) for e in events)])
    with db.sessions() as session:
        row = Projections(session).audience_member("gone1")
        assert row is not None and not hasattr(row, "p_alive")  # no copy kept to go stale

    campaign = make_campaign(
        db,
        audience={"rule": {"field": "segments", "op": "contains", "value": "likely-gone"}},
        channels=["sms"],
    )
    assert launch(db, campaign, settings()).tally.targeted == 3
