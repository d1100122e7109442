"""Business gauges of the predictive CLV, per currency, set after each committed CLV run.

A currency whose latest fit publishes no numbers keeps only ``crm_segment_clv_fit_ok 0``:
its other series are removed rather than left at old values.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Gauge

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
    """Set the gauges from a committed run."""
    for fit in run.fits:
        figures = run.figures.get(fit.currency)
        FIT_OK.labels(fit.currency).set(1 if figures is not None else 0)
        for name, gauge in FIGURES.items():
            if figures is not None:
                gauge.labels(fit.currency).set(figures[name])
            else:
                with contextlib.suppress(KeyError):  # never set for this currency
                    gauge.remove(fit.currency)
