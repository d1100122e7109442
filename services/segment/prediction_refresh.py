"""The per-event refresh of predictive CLV: a customer whose orders changed gets their
predictions recomputed from the stored fit's parameters (closed forms, no refit), so
segment rules, ``segment.changed`` events and reads carry numbers that include the
purchase, not the ones of the last run.

Only customers who already have stored predictions are refreshed, with the fit they came
from when it is still their currency's latest and publishes numbers; their
``predicted_clv_percentile`` stays the run's (a rank belongs to a run's distribution). A
customer whose latest purchase moved them to another currency loses the stored numbers
(they were in the old currency); a customer newer than the fit stays ``not_fitted`` until
the next run. Recomputing from the stored purchases is idempotent: an event seen twice or
late gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.segment.clv_repository import ClvFits, Predictions, valid_purchases
from services.segment.predictive import PREDICTION_ROW, _e4, customer_summaries, predict


def refresh(session: Session, customer_ids: Sequence[str], now: datetime, timezone: str) -> int:
    """Recompute these customers' stored predictions as of ``now``; returns how many
    customers' stored predictions were rewritten or dropped."""
    if not customer_ids:
        return 0
    stored = {row[0]: row for row in Predictions(session).event_rows(customer_ids)}
    if not stored:
        return 0
    fits = ClvFits(session).latest_per_currency()
    ids = sorted(stored)
    purchases = valid_purchases(session, ids, created=False)
    summary = customer_summaries(purchases, now, timezone)
    rows: list[tuple[Any, ...]] = []
    for currency, part in summary.groupby("currency", sort=True):
        fit = fits.get(str(currency))
        if fit is None or fit.status != "ok":
            continue
        # only those whose stored numbers came from this very fit
        mine = [c for c in part.index if stored[c][1] == fit.id]
        if not mine:
            continue
        predicted = predict(
            part.loc[mine],
            fit.models["bgnbd"]["parameters"],
            fit.models["gamma_gamma"]["parameters"],
            fit.horizon_months,
            fit.monthly_discount_rate,
        )
        aov = _e4(predicted["expected_order_value"]).tolist()
        clv = _e4(predicted["predicted_clv"]).tolist()
        columns = [
            predicted[c].astype("float64").tolist()
            for c in (
                "p_alive",
                "expected_purchases_30d",
                "expected_purchases_90d",
                "expected_purchases_365d",
            )
        ]
        for i, customer_id in enumerate(predicted.index):
            rows.append(
                (
                    str(customer_id),
                    fit.id,
                    fit.currency,
                    now,
                    *(values[i] for values in columns),
                    aov[i],
                    clv[i],
                    stored[str(customer_id)][-1],  # the run's percentile
                )
            )
    Predictions(session).replace_for(ids, PREDICTION_ROW, rows)
    return len(ids)
