"""Business gauges of the predictive CLV, per currency: set after each committed CLV run
and refreshed from the database by every process (``SEGMENT_CLV_GAUGE_SECONDS``).

A currency whose latest fit publishes no numbers keeps only ``crm_segment_clv_fit_ok 0``:
its other series are removed rather than left at old values.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Gauge
from sqlalchemy.orm import Session

from services.segment.clv_repository import ClvFits, Predictions
from services.segment.clv_runs import ClvRun

FIT_OK = Gauge(
    "crm_segment_clv_fit_ok",
    "1 when the currency's latest BG/NBD + Gamma-Gamma fit publishes predictions, else 0",
    ["currency"],
)
FIGURES = {
    "customers_predicted": Gauge(
        "crm_segment_clv_customers_predicted", "Customers with predictions", ["currency"]
    ),
    "predicted_clv_total": Gauge(
        "crm_segment_predicted_clv_total",
        "Sum of the customers' predicted CLV (currency units, the fit's horizon and discount)",
        ["currency"],
    ),
    "p_alive_mean": Gauge(
        "crm_segment_p_alive_mean", "Mean probability that a customer is still active", ["currency"]
    ),
    "expected_purchases_90d_total": Gauge(
        "crm_segment_expected_purchases_90d_total",
        "Purchases expected from the current customers in the next 90 days",
        ["currency"],
    ),
}


def publish(run: ClvRun) -> None:
    """Set the gauges from a committed run (at once, in the process that ran it)."""
    _set([fit.currency for fit in run.fits], run.figures)


def refresh(session: Session) -> None:
    """Set the gauges from the database (every process, periodically and after a restart)."""
    latest = ClvFits(session).latest_per_currency()
    figures = Predictions(session).figures()
    _set(
        list(latest),
        {c: f for c, f in figures.items() if latest.get(c) and latest[c].status == "ok"},
    )


def _set(currencies: list[str], figures: dict[str, dict[str, float]]) -> None:
    for currency in currencies:
        numbers = figures.get(currency)
        FIT_OK.labels(currency).set(1 if numbers is not None else 0)
        for name, gauge in FIGURES.items():
            if numbers is not None:
                gauge.labels(currency).set(numbers[name])
            else:
                with contextlib.suppress(KeyError):  # never set for this currency
                    gauge.remove(currency)
