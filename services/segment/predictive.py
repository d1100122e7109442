"""Predictive CLV use cases: fit BG/NBD + Gamma-Gamma per currency, store the fits and
every customer's predictions, read them back (flush, never commit).

A customer belongs to the currency of their latest valid purchase and is summarised over
their purchases in that currency (``clv.clv_summary``: daily periods in the policy's
timezone). Each currency is fitted on its own; a fit publishes numbers only when both
models converged on enough data (:class:`ClvOptions`); otherwise the fit is kept with its
status and reason and that currency's customers have no predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from services.segment import clv_models
from services.segment.clv import clv_summary
from services.segment.clv_repository import (
    PREDICTION_COLUMNS,
    ClvFits,
    Predictions,
    valid_purchases,
)
from services.segment.models import ClvFit
from services.segment.money import MONEY_SCALE, money_text
from services.segment.order_history import OrderVersions
from services.segment.rules import PREDICTION_FIELDS, Rule, fields_of
from shared.db import read_datetime
from shared.events import ensure_aware, utcnow

EXPECTED_PURCHASE_HORIZONS = (30, 90, 365)


@dataclass(frozen=True)
class ClvOptions:
    """When a fit may publish numbers, and what the predicted CLV means."""

    #: customers with a purchase in the currency
    min_customers: int = 100
    #: of whom bought again on another day (BG/NBD and Gamma-Gamma learn from them)
    min_repeat_customers: int = 20
    #: days from the currency's first purchase day to the observation day
    min_history_days: int = 90
    horizon_months: int = 12
    monthly_discount_rate: float = 0.01


@dataclass
class FitOutcome:
    status: str  # ok | insufficient_data | not_converged
    reason: str | None
    bgnbd: clv_models.Fit | None
    gamma_gamma: clv_models.Fit | None


def customer_summaries(
    purchases: pd.DataFrame, as_of: datetime, timezone: str, cutoff: bool = False
) -> pd.DataFrame:
    """Each customer's CLV summary in the currency of their latest purchase up to ``as_of``.

    ``purchases``: customer_id, order_id, purchased_at, net_e4, currency (valid purchases),
    and created_at with ``cutoff``: then orders created after ``as_of`` are ignored too (an
    as-of query). Indexed by customer_id: frequency, recency, T, monetary_value, repeat_total_e4,
    currency.
    """
    keep = purchases["purchased_at"] <= as_of
    if cutoff:
        keep &= purchases["created_at"] <= as_of
    frame = purchases[keep]
    if frame.empty:
        return clv_summary(frame, as_of, timezone).assign(currency=pd.Series(dtype=object))
    # integer codes, one sort: the latest purchase is the greatest (purchased_at, order_id)
    customers, ids = pd.factorize(frame["customer_id"].to_numpy(dtype=object), sort=True)
    orders = pd.factorize(frame["order_id"].to_numpy(dtype=object), sort=True)[0]
    utc = pd.to_datetime(frame["purchased_at"], utc=True).dt.tz_localize(None)
    instants = utc.to_numpy().astype("datetime64[us]").astype("int64")
    order = np.lexsort((orders, instants, customers))
    last_rows = order[np.r_[customers[order][1:] != customers[order][:-1], True]]
    currencies = frame["currency"].to_numpy(dtype=object)
    latest = currencies[last_rows]  # per customer code (codes are sorted, as last_rows)
    in_currency = currencies == latest[customers]
    summary = clv_summary(frame[in_currency], as_of, timezone)
    summary["currency"] = pd.Series(latest, index=ids).reindex(summary.index).to_numpy()
    return summary


def fit_currency(summary: pd.DataFrame, options: ClvOptions) -> FitOutcome:
    """Fit both models on one currency's summaries, or say why no numbers are published."""
    customers = len(summary)
    repeat = int((summary["frequency"] > 0).sum())
    history = int(summary["T"].max()) if customers else 0
    short = []
    if customers < options.min_customers:
        short.append(f"{customers} customers (minimum {options.min_customers})")
    if repeat < options.min_repeat_customers:
        short.append(f"{repeat} repeat buyers (minimum {options.min_repeat_customers})")
    if history < options.min_history_days:
        short.append(f"{history} days of history (minimum {options.min_history_days})")
    if short:
        return FitOutcome("insufficient_data", "; ".join(short), None, None)
    bgnbd = clv_models.fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    if not bgnbd.converged:
        return FitOutcome("not_converged", f"BG/NBD: {bgnbd.message}", bgnbd, None)
    gamma_gamma = clv_models.fit_gamma_gamma(summary["frequency"], summary["monetary_value"])
    if not gamma_gamma.converged:
        return FitOutcome(
            "not_converged", f"Gamma-Gamma: {gamma_gamma.message}", bgnbd, gamma_gamma
        )
    return FitOutcome("ok", None, bgnbd, gamma_gamma)


def predict(
    summary: pd.DataFrame,
    bgnbd: dict[str, float],
    gamma_gamma: dict[str, float],
    horizon_months: int,
    monthly_discount_rate: float,
) -> pd.DataFrame:
    """Every customer's predictions (floats; money in currency units), indexed as ``summary``.

    Customers with the same (frequency, recency, T) share every BG/NBD figure: those are
    computed once per distinct triple (daily periods give few distinct triples).
    """
    x = summary["frequency"].to_numpy(dtype="int64")
    t_x = summary["recency"].to_numpy(dtype="int64")
    big_t = summary["T"].to_numpy(dtype="int64")
    keys = (x << 42) | (t_x << 21) | big_t
    unique, inverse = np.unique(keys, return_inverse=True)
    ux = (unique >> 42).astype("float64")
    ut = ((unique >> 21) & ((1 << 21) - 1)).astype("float64")
    uT = (unique & ((1 << 21) - 1)).astype("float64")
    out = pd.DataFrame(index=summary.index)
    out["p_alive"] = clv_models.p_alive(bgnbd, ux, ut, uT)[inverse]
    for days in EXPECTED_PURCHASE_HORIZONS:
        expected = clv_models.expected_purchases(bgnbd, days, ux, ut, uT)
        out[f"expected_purchases_{days}d"] = expected[inverse]
    order_value = clv_models.expected_order_value(
        gamma_gamma, summary["frequency"], summary["monetary_value"]
    )
    # predicted CLV is linear in the order value: discount the purchases once per triple
    discounted = clv_models.predicted_clv(
        bgnbd, np.ones(len(unique)), ux, ut, uT, horizon_months, monthly_discount_rate
    )
    out["expected_order_value"] = order_value
    out["predicted_clv"] = order_value * discounted[inverse]
    return out


def percentiles(values: np.ndarray) -> np.ndarray:
    """The share (0-100) of the values strictly below each value."""
    ordered = np.sort(values)
    return 100.0 * np.searchsorted(ordered, values, side="left") / max(len(values), 1)


def _e4(values: Any) -> np.ndarray:
    return np.rint(np.asarray(values, dtype="float64") * MONEY_SCALE).astype("int64")


@dataclass
class FitRun:
    """The fits of one run and, per currency with numbers, the business figures (gauges)."""

    fits: list[ClvFit]
    figures: dict[str, dict[str, float]]
    #: seconds per phase: read, summary, fit, predict, write
    phases: dict[str, float]


def _figures(predicted: pd.DataFrame) -> dict[str, float]:
    return {
        "customers_predicted": float(len(predicted)),
        "predicted_clv_total": float(predicted["predicted_clv"].sum()),
        "p_alive_mean": float(predicted["p_alive"].mean()),
        "expected_purchases_90d_total": float(predicted["expected_purchases_90d"].sum()),
    }


def run_fits(session: Session, now: datetime, timezone: str, options: ClvOptions) -> FitRun:
    """Fit every currency as of ``now``, keep each fit, replace the stored predictions.

    A currency whose fit publishes no numbers loses its stored predictions: a rule on
    ``p_alive`` then matches none of its customers rather than acting on old figures.
    """
    phases = dict.fromkeys(("read", "summary", "fit", "predict", "write"), 0.0)
    mark = time.perf_counter()
    purchases = valid_purchases(session, created=False)  # no cutoff: purchased_at decides
    phases["read"] = time.perf_counter() - mark
    mark = time.perf_counter()
    summaries = customer_summaries(purchases, now, timezone)
    phases["summary"] = time.perf_counter() - mark
    known = purchases[purchases["purchased_at"] <= now]
    first_purchase = known.groupby("currency")["purchased_at"].min()
    # everything is computed before the first write: on SQLite the write lock is then
    # held only for the write itself, not while fitting
    fits: list[ClvFit] = []
    figures: dict[str, dict[str, float]] = {}
    predictions: list[tuple[ClvFit, pd.DataFrame]] = []
    for currency, summary in summaries.groupby("currency", sort=True):
        started = time.perf_counter()
        outcome = fit_currency(summary, options)
        phases["fit"] += time.perf_counter() - started
        fit = _fit_row(str(currency), summary, outcome, now, options)
        if currency in first_purchase.index:  # the currency's first purchase, to the second
            fit.window_start = pd.Timestamp(first_purchase[currency]).to_pydatetime()
        if outcome.status == "ok":
            assert outcome.bgnbd is not None and outcome.gamma_gamma is not None
            mark = time.perf_counter()
            predicted = predict(
                summary,
                outcome.bgnbd.parameters,
                outcome.gamma_gamma.parameters,
                options.horizon_months,
                options.monthly_discount_rate,
            )
            predictions.append((fit, predicted))
            figures[str(currency)] = _figures(predicted)
            phases["predict"] += time.perf_counter() - mark
        fit.seconds = round(time.perf_counter() - started, 3)
        fits.append(fit)
    mark = time.perf_counter()
    repository = ClvFits(session)
    for fit in fits:
        repository.add(fit)  # flushed: the ids are known
    rows: list[tuple[Any, ...]] = []
    for fit, predicted in predictions:
        rows.extend(_prediction_rows(predicted, fit.id, fit.currency, now))
    Predictions(session).replace_all(PREDICTION_ROW, rows)
    session.flush()
    phases["write"] = time.perf_counter() - mark
    return FitRun(fits, figures, {k: round(v, 3) for k, v in phases.items()})


def _fit_row(
    currency: str, summary: pd.DataFrame, outcome: FitOutcome, now: datetime, options: ClvOptions
) -> ClvFit:
    first_day = int(summary["T"].max()) if len(summary) else 0
    return ClvFit(
        currency=currency,
        status=outcome.status,
        reason=outcome.reason,
        as_of=now,
        window_start=now - timedelta(days=first_day),
        customers=len(summary),
        repeat_customers=int((summary["frequency"] > 0).sum()),
        models={
            name: model.to_json()
            for name, model in (("bgnbd", outcome.bgnbd), ("gamma_gamma", outcome.gamma_gamma))
            if model is not None
        },
        horizon_months=options.horizon_months,
        monthly_discount_rate=options.monthly_discount_rate,
        fitted_at=utcnow(),
        seconds=0.0,
    )


#: the stored prediction row, in the order :func:`_prediction_rows` gives it
PREDICTION_ROW = ["customer_id", "fit_id", "currency", "as_of", *PREDICTION_COLUMNS]


def _prediction_rows(
    predicted: pd.DataFrame, fit_id: int, currency: str, now: datetime
) -> list[tuple[Any, ...]]:
    """One tuple per customer in :data:`PREDICTION_ROW` order (column by column)."""
    clv = predicted["predicted_clv"].to_numpy()
    n = len(predicted)
    return list(
        zip(
            [str(c) for c in predicted.index],
            [fit_id] * n,
            [currency] * n,
            [now] * n,
            predicted["p_alive"].tolist(),
            predicted["expected_purchases_30d"].tolist(),
            predicted["expected_purchases_90d"].tolist(),
            predicted["expected_purchases_365d"].tolist(),
            _e4(predicted["expected_order_value"]).tolist(),
            _e4(clv).tolist(),
            percentiles(clv).tolist(),
            strict=True,
        )
    )


@dataclass
class CustomerPredictionView:
    """A customer's predictions, or why there are none (``status`` != ``ok``)."""

    status: str  # ok | insufficient_data | not_converged | not_fitted | no_purchase
    reason: str | None
    currency: str | None
    fit: ClvFit | None
    values: dict[str, Any]
    as_of: datetime | None


def stored_predictions(
    session: Session, customers: list[tuple[str, str | None]]
) -> dict[str, CustomerPredictionView]:
    """The stored predictions (as of the last fit run) of these (customer id, currency) pairs."""
    # driver-level rows and fits without their parameters: asked on every scores read
    stored = {row[0]: row for row in Predictions(session).event_rows([c for c, _ in customers])}
    latest = ClvFits(session).latest_per_currency(with_models=False)
    fits = {fit.id: fit for fit in latest.values()}
    views = {}
    for customer_id, currency in customers:
        row = stored.get(customer_id)
        if row is not None and row[2] == currency:
            fit_id = row[1]
            fit = fits.get(fit_id) or ClvFits(session).get(fit_id)
            values = dict(zip(PREDICTION_COLUMNS, row[4:], strict=True))
            views[customer_id] = CustomerPredictionView(
                "ok", None, currency, fit, values, read_datetime(row[3])
            )
            continue
        views[customer_id] = _missing(currency, latest.get(currency) if currency else None)
    return views


def _missing(currency: str | None, fit: ClvFit | None) -> CustomerPredictionView:
    if currency is None:
        return CustomerPredictionView("no_purchase", "no valid purchase", None, None, {}, None)
    if fit is None:
        return CustomerPredictionView(
            "not_fitted", f"no fit for {currency} yet", currency, None, {}, None
        )
    if fit.status == "ok":  # a customer newer than the fit
        return CustomerPredictionView(
            "not_fitted",
            f"no prediction in {currency} from the fit of {ensure_aware(fit.as_of).isoformat()} "
            "(a first purchase, or a move to this currency, after it)",
            currency,
            fit,
            {},
            None,
        )
    return CustomerPredictionView(fit.status, fit.reason, currency, fit, {}, None)


def predictions_as_of(
    session: Session, customer_ids: list[str], as_of: datetime, timezone: str
) -> dict[str, CustomerPredictionView]:
    """Predictions computed from the orders known at ``as_of`` with the currency's fit in
    force then: the newest run at or before ``as_of`` (a later fit learnt from later
    purchases); none: ``not_fitted``; one publishing no numbers (insufficient_data,
    not_converged): its status and reason, no numbers, as the plain read said then.
    No percentile: that belongs to a fit run.

    In valid time, as the scores' ``as_of``: each order's version known at ``as_of``, so an
    order paid before and refunded after ``as_of`` is still a purchase then."""
    orders = OrderVersions(session).frame_as_of(as_of, customer_ids)
    purchases = orders[orders["valid"].astype(bool)]
    summary = customer_summaries(purchases, as_of, timezone, cutoff=True)
    views: dict[str, CustomerPredictionView] = {}
    for currency, part in summary.groupby("currency"):
        fit = ClvFits(session).in_force(str(currency), as_of)
        if fit is None or fit.status != "ok":
            withheld = (
                CustomerPredictionView(fit.status, fit.reason, str(currency), fit, {}, None)
                if fit is not None
                else CustomerPredictionView(
                    "not_fitted",
                    f"no {currency} fit run by {as_of.isoformat()}",
                    str(currency),
                    None,
                    {},
                    None,
                )
            )
            for customer_id in part.index:
                views[str(customer_id)] = withheld
            continue
        predicted = predict(
            part,
            fit.models["bgnbd"]["parameters"],
            fit.models["gamma_gamma"]["parameters"],
            fit.horizon_months,
            fit.monthly_discount_rate,
        )
        for customer_id, row in predicted.iterrows():
            values = {
                "p_alive": float(row["p_alive"]),
                **{
                    f"expected_purchases_{d}d": float(row[f"expected_purchases_{d}d"])
                    for d in EXPECTED_PURCHASE_HORIZONS
                },
                "expected_order_value_e4": int(_e4(row["expected_order_value"])),
                "predicted_clv_e4": int(_e4(row["predicted_clv"])),
                "predicted_clv_percentile": None,
            }
            views[str(customer_id)] = CustomerPredictionView(
                "ok", None, str(currency), fit, values, as_of
            )
    for customer_id in customer_ids:
        views.setdefault(customer_id, _missing(None, None))
    return views


def event_predictions(session: Session, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The ``predictions`` of these customers' ``segment.changed`` events (wire form)."""
    if not customer_ids:
        return {}
    found = {}
    for row in Predictions(session).event_rows(customer_ids):
        (customer_id, fit_id, currency, as_of, p_alive, e30, e90, e365, aov, clv, pct) = row
        found[customer_id] = {
            "fit_id": fit_id,
            "currency": currency,
            "as_of": ensure_aware(
                datetime.fromisoformat(as_of) if isinstance(as_of, str) else as_of
            ),
            "p_alive": p_alive,
            "expected_purchases_30d": e30,
            "expected_purchases_90d": e90,
            "expected_purchases_365d": e365,
            "expected_order_value": money_text(aov, currency),
            "predicted_clv": money_text(clv, currency),
            "predicted_clv_percentile": pct,
        }
    return found


def with_predictions(
    session: Session, frame: pd.DataFrame, segments: list[tuple[str, Rule]]
) -> pd.DataFrame:
    """The scores frame plus the stored prediction columns, when a segment rule reads one.

    Customers without stored predictions get missing values (no comparison matches them).
    """
    wanted = set().union(*(fields_of(rule) for _, rule in segments)) if segments else set()
    if not wanted & PREDICTION_FIELDS or frame.empty:
        return frame
    ids = frame["customer_id"].astype(str).tolist()
    if len(ids) > 10_000:
        # a rescoring page (customer id order): the predictions of its id range, one query
        stored = Predictions(session).frame(between=(min(ids), max(ids))).set_index("customer_id")
    else:
        names = ["customer_id", "fit_id", "currency", "as_of", *PREDICTION_COLUMNS]
        rows = Predictions(session).event_rows(ids)
        stored = pd.DataFrame(rows, columns=names).set_index("customer_id")
    joined = stored.reindex(ids)
    out = frame.copy()
    for name in PREDICTION_COLUMNS:
        out[name] = joined[name].to_numpy(dtype="float64")
    return out
