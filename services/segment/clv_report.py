"""``GET /v1/reports/clv``: the fitted parameters, a calibration / holdout check and the
distribution of predicted CLV, for one currency.

The check refits BG/NBD on the purchases up to ``holdout_from`` (the calibration period,
orders created after it ignored) and compares, per calibration frequency bucket, the
purchases it predicts over the holdout period ``(holdout_from, holdout_to]`` with the
purchase days that actually happened then (lifetimes'
``calibration_and_holdout_data`` with daily periods, and its "calibration purchases vs
holdout purchases" plot, as numbers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from services.segment import clv_models
from services.segment.clv_repository import ClvFits, Predictions, valid_purchases
from services.segment.local_days import local_day_number, local_day_numbers
from services.segment.models import ClvFit
from services.segment.money import money_text
from services.segment.predictive import ClvOptions, customer_summaries, fit_currency

#: calibration frequency buckets: 0, 1, ..., 6 repeat purchase days, then 7+
TOP_BUCKET = 7
CLV_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def holdout_check(
    purchases: pd.DataFrame,
    currency: str,
    holdout_from: datetime,
    holdout_to: datetime,
    timezone: str,
    options: ClvOptions,
) -> dict[str, Any]:
    """Predicted vs actual holdout purchases per calibration frequency bucket (pure)."""
    calibration = customer_summaries(purchases, holdout_from, timezone, cutoff=True)
    calibration = calibration[calibration["currency"] == currency]
    start_day = local_day_number(holdout_from, timezone)
    end_day = local_day_number(holdout_to, timezone)
    body: dict[str, Any] = {
        "holdout_from": holdout_from,
        "holdout_to": holdout_to,
        "holdout_days": end_day - start_day,
        "customers": len(calibration),
    }
    outcome = fit_currency(calibration, options)
    body["status"], body["reason"] = outcome.status, outcome.reason
    body["calibration_fit"] = outcome.bgnbd.to_json() if outcome.bgnbd else None
    if outcome.bgnbd is None or not outcome.bgnbd.converged:
        body["buckets"] = []
        return body
    # the check needs only BG/NBD: a Gamma-Gamma failure does not hide it
    body["status"], body["reason"] = "ok", None

    # actual: distinct purchase days in the holdout, in the currency, of calibration customers
    later = purchases[
        (purchases["currency"] == currency)
        & purchases["customer_id"].isin(calibration.index)
        & (purchases["created_at"] <= holdout_to)
    ]
    days = local_day_numbers(later["purchased_at"], timezone)
    inside = (days > start_day) & (days <= end_day)
    pairs = pd.DataFrame(
        {"customer_id": later["customer_id"].to_numpy()[inside], "day": days[inside]}
    )
    per_customer = pairs.drop_duplicates().groupby("customer_id").size()
    actual = per_customer.reindex(calibration.index, fill_value=0).to_numpy(dtype="float64")
    predicted = clv_models.expected_purchases(
        outcome.bgnbd.parameters,
        end_day - start_day,
        calibration["frequency"],
        calibration["recency"],
        calibration["T"],
    )
    frequency = calibration["frequency"].to_numpy(dtype="int64")
    bucket = np.minimum(frequency, TOP_BUCKET)
    rows = []
    for value in range(TOP_BUCKET + 1):
        mask = bucket == value
        count = int(mask.sum())
        if not count:
            continue
        rows.append(
            {
                "frequency": f"{value}+" if value == TOP_BUCKET else str(value),
                "customers": count,
                "actual_purchases": float(actual[mask].mean()),
                "predicted_purchases": float(predicted[mask].mean()),
            }
        )
    body["buckets"] = rows
    body["actual_total"] = float(actual.sum())
    body["predicted_total"] = float(predicted.sum())
    return body


def clv_distribution(predictions: pd.DataFrame, currency: str) -> dict[str, Any]:
    """Quantiles of the stored predicted CLV and each decile's share of the total."""
    values = np.sort(predictions["predicted_clv_e4"].to_numpy(dtype="int64"))
    if not len(values):
        return {"customers": 0}
    total = int(values.sum())
    deciles = np.array_split(values[::-1], 10)
    return {
        "customers": len(values),
        "total": money_text(total, currency),
        "mean": money_text(round(total / len(values)), currency),
        "quantiles": {
            f"p{int(q * 100)}": money_text(round(float(np.quantile(values, q))), currency)
            for q in CLV_QUANTILES
        },
        # decile 1 = the 10 % of customers with the highest predicted CLV
        "deciles": [
            {
                "decile": i + 1,
                "customers": len(part),
                "total": money_text(int(part.sum()), currency),
                "share": float(part.sum() / total) if total else 0.0,
            }
            for i, part in enumerate(deciles)
        ],
        "p_alive_mean": float(predictions["p_alive"].mean()),
    }


def build(
    session: Session,
    currency: str | None,
    holdout_from: datetime,
    holdout_to: datetime,
    timezone: str,
    options: ClvOptions,
) -> dict[str, Any]:
    """The report body (the route adds nothing): fit, holdout check, CLV distribution."""
    fits = ClvFits(session).latest_per_currency()
    purchases = valid_purchases(session)
    if currency is None:
        # the currency with the most buyers
        counts = purchases.groupby("currency")["customer_id"].nunique()
        currency = str(counts.idxmax()) if len(counts) else None
    fit = fits.get(currency) if currency else None
    body: dict[str, Any] = {"currency": currency, "fit": fit_body(fit) if fit else None}
    if currency is None:
        body["holdout"] = None
        body["clv_distribution"] = {"customers": 0}
        return body
    body["holdout"] = holdout_check(
        purchases, currency, holdout_from, holdout_to, timezone, options
    )
    if fit is not None and fit.status == "ok":
        body["clv_distribution"] = clv_distribution(Predictions(session).frame(currency), currency)
    else:
        body["clv_distribution"] = None
    return body


def fit_body(fit: ClvFit) -> dict[str, Any]:
    """A stored fit as the API gives it."""
    return {
        "fit_id": fit.id,
        "currency": fit.currency,
        "status": fit.status,
        "reason": fit.reason,
        "as_of": fit.as_of,
        "window_start": fit.window_start,
        "customers": fit.customers,
        "repeat_customers": fit.repeat_customers,
        "bgnbd": fit.models.get("bgnbd"),
        "gamma_gamma": fit.models.get("gamma_gamma"),
        "horizon_months": fit.horizon_months,
        "monthly_discount_rate": fit.monthly_discount_rate,
        "fitted_at": fit.fitted_at,
        "seconds": fit.seconds,
    }
