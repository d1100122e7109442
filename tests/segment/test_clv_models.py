"""BG/NBD and Gamma-Gamma recover the published CDNOW parameters and agree with lifetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import lifetimes
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter

from services.segment import clv_models
from services.segment.clv import clv_summary
from services.segment.clv_models import (
    bgnbd_log_likelihood,
    expected_order_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    p_alive,
    predicted_clv,
)

DATASETS = Path(lifetimes.__file__).parent / "datasets"


def cdnow_summary() -> pd.DataFrame:
    """The 2,357-customer CDNOW cohort, 39-week calibration (weeks), with mean repeat spend.

    ``cdnow_customers_summary_with_transactions.csv`` is the summary Fader, Hardie and Lee
    used: x, t_x, T and zbar (the mean value of the repeat transactions).
    """
    frame = pd.read_csv(DATASETS / "cdnow_customers_summary_with_transactions.csv")
    return frame.rename(
        columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    ).set_index("ID")


def within(actual: float, published: float, tolerance: float = 0.01) -> bool:
    return abs(actual - published) <= tolerance * abs(published)


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    frame = cdnow_summary()
    assert len(frame) == 2357
    # the plain summary lifetimes ships is the same cohort
    plain = pd.read_csv(DATASETS / "cdnow_customers_summary.csv").set_index("ID")
    pd.testing.assert_frame_equal(plain, frame[["frequency", "recency", "T"]])
    return frame


@pytest.fixture(scope="module")
def bgnbd(summary: pd.DataFrame) -> dict[str, float]:
    fit = fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    assert fit.converged, fit.message
    assert fit.customers == 2357
    return fit.parameters


@pytest.fixture(scope="module")
def reference(summary: pd.DataFrame) -> BetaGeoFitter:
    return BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])


def test_bgnbd_recovers_the_published_cdnow_parameters(summary: pd.DataFrame) -> None:
    fit = fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    assert fit.converged
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert within(fit.parameters[name], value), (name, fit.parameters[name], value)
    # the published log-likelihood of the fit (Fader, Hardie and Lee 2005): -9582.4
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)


def test_gamma_gamma_recovers_the_published_cdnow_parameters(summary: pd.DataFrame) -> None:
    repeat = summary[summary["frequency"] > 0]
    assert len(repeat) == 946  # the repeat buyers the published figures were fitted on
    fit = fit_gamma_gamma(summary["frequency"], summary["monetary_value"])
    assert fit.converged, fit.message
    assert fit.customers == 946
    published = {"p": 6.25, "q": 3.74, "gamma": 15.44}
    for name, value in published.items():
        assert within(fit.parameters[name], value), (name, fit.parameters[name], value)


def test_bgnbd_matches_lifetimes(
    summary: pd.DataFrame, bgnbd: dict[str, float], reference: BetaGeoFitter
) -> None:
    for name in ("r", "alpha", "a", "b"):
        assert bgnbd[name] == pytest.approx(reference.params_[name], rel=2e-3)
    # with lifetimes' own parameters, every prediction is the same function
    theirs = {name: float(reference.params_[name]) for name in ("r", "alpha", "a", "b")}
    x, t_x, big_t = summary["frequency"], summary["recency"], summary["T"]
    np.testing.assert_allclose(
        p_alive(theirs, x, t_x, big_t),
        reference.conditional_probability_alive(x, t_x, big_t),
        rtol=1e-10,
    )
    for horizon in (1.0, 4.3, 39.0, 52.0):
        np.testing.assert_allclose(
            expected_purchases(theirs, horizon, x, t_x, big_t),
            reference.conditional_expected_number_of_purchases_up_to_time(horizon, x, t_x, big_t),
            rtol=1e-9,
        )


def test_log_likelihoods_equal_lifetimes_and_gradients_are_exact(summary: pd.DataFrame) -> None:
    x = summary["frequency"].to_numpy(dtype=float)
    t_x = summary["recency"].to_numpy(dtype=float)
    big_t = summary["T"].to_numpy(dtype=float)
    params = np.array([0.3, 5.0, 0.9, 2.0])
    ll, grad = bgnbd_log_likelihood(params, x, t_x, big_t)
    theirs = BetaGeoFitter._negative_log_likelihood(
        np.log(params), x, t_x, big_t, np.ones_like(x), 0.0
    )
    assert -ll.mean() == pytest.approx(theirs, rel=1e-10)
    step = 1e-6
    for i in range(4):
        moved = params.copy()
        moved[i] += step
        numeric = (bgnbd_log_likelihood(moved, x, t_x, big_t)[0].sum() - ll.sum()) / step
        assert grad[i].sum() == pytest.approx(numeric, rel=1e-4)

    repeat = summary[summary["frequency"] > 0]
    xr = repeat["frequency"].to_numpy(dtype=float)
    m = repeat["monetary_value"].to_numpy(dtype=float)
    gg = np.array([5.0, 3.0, 12.0])
    ll, grad = gamma_gamma_log_likelihood(gg, xr, m)
    theirs = GammaGammaFitter._negative_log_likelihood(np.log(gg), xr, m, np.ones_like(xr), 0.0)
    assert -ll.mean() == pytest.approx(theirs, rel=1e-10)
    for i in range(3):
        moved = gg.copy()
        moved[i] += step
        numeric = (gamma_gamma_log_likelihood(moved, xr, m)[0].sum() - ll.sum()) / step
        assert grad[i].sum() == pytest.approx(numeric, rel=1e-4)


def test_order_value_and_clv_match_lifetimes(
    summary: pd.DataFrame, reference: BetaGeoFitter
) -> None:
    gg = GammaGammaFitter().fit(
        summary.loc[summary["frequency"] > 0, "frequency"],
        summary.loc[summary["frequency"] > 0, "monetary_value"],
    )
    params = {
        "p": float(gg.params_["p"]),
        "q": float(gg.params_["q"]),
        "gamma": float(gg.params_["v"]),
    }
    x, m = summary["frequency"], summary["monetary_value"]
    aov = expected_order_value(params, x, m)
    np.testing.assert_allclose(aov, gg.conditional_expected_average_profit(x, m), rtol=1e-10)

    # lifetimes' customer_lifetime_value with daily periods: the summary in days
    days = summary[["frequency", "recency", "T", "monetary_value"]].copy()
    days["recency"] = (days["recency"] * 7).round()
    days["T"] = (days["T"] * 7).round()
    daily = BetaGeoFitter().fit(days["frequency"], days["recency"], days["T"])
    bg = {name: float(daily.params_[name]) for name in ("r", "alpha", "a", "b")}
    expected = gg.customer_lifetime_value(
        daily,
        days["frequency"],
        days["recency"],
        days["T"],
        days["monetary_value"],
        time=12,
        discount_rate=0.01,
        freq="D",
    )
    actual = predicted_clv(
        bg,
        expected_order_value(params, x, m),
        days["frequency"],
        days["recency"],
        days["T"],
        12,
        0.01,
    )
    np.testing.assert_allclose(actual, expected.to_numpy(), rtol=1e-9)


def test_the_transaction_log_through_our_summary_recovers_the_published_fits(
    summary: pd.DataFrame,
) -> None:
    """CDNOW_sample.txt (the transactions) through ``clv_summary`` (daily periods) is the
    published cohort, and the fits on it recover the published parameters (alpha in days)."""
    raw = pd.read_csv(
        DATASETS / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["customer", "id", "date", "units", "amount"],
        dtype={"date": str},
    )
    purchases = pd.DataFrame(
        {
            "customer_id": raw["id"],
            "purchased_at": pd.to_datetime(raw["date"], format="%Y%m%d").dt.tz_localize("UTC")
            + pd.Timedelta(hours=12),
            "net_e4": (raw["amount"] * 10_000).round().astype("int64"),
        }
    )
    daily = clv_summary(purchases, datetime(1997, 9, 30, 23, tzinfo=UTC), "UTC")
    daily.index = daily.index.astype(int)
    daily = daily.loc[summary.index]
    assert len(daily) == 2357
    np.testing.assert_array_equal(daily["frequency"], summary["frequency"])
    # the published summary gives weeks to two decimals
    np.testing.assert_allclose(daily["recency"] / 7, summary["recency"], atol=0.005)
    np.testing.assert_allclose(daily["T"] / 7, summary["T"], atol=0.005)
    np.testing.assert_allclose(daily["monetary_value"], summary["monetary_value"], atol=0.005)

    fit = fit_bgnbd(daily["frequency"], daily["recency"], daily["T"])
    assert fit.converged
    for name, value in {"r": 0.243, "alpha": 4.414 * 7, "a": 0.793, "b": 2.426}.items():
        assert within(fit.parameters[name], value), (name, fit.parameters[name], value)
    gg = fit_gamma_gamma(daily["frequency"], daily["monetary_value"])
    assert gg.converged
    for name, value in {"p": 6.25, "q": 3.74, "gamma": 15.44}.items():
        assert within(gg.parameters[name], value), (name, gg.parameters[name], value)


def test_a_fit_without_repeat_buyers_does_not_converge() -> None:
    fit = fit_bgnbd(np.zeros(50), np.zeros(50), np.full(50, 30.0))
    assert not fit.converged
    gg = fit_gamma_gamma(np.array([1.0, 2.0]), np.array([10.0, 10.0]))
    assert gg.customers == 2


@pytest.mark.parametrize(
    ("x", "message", "expected"),
    [
        # scipy's bare line-search failure while a parameter heads for the bound
        ([0.1, 11.5], "ABNORMAL: ", "a parameter ran to its bound"),
        ([0.1, 2.0], "ABNORMAL: ", "stopped without converging (ABNORMAL: its line search"),
        ([0.1, 2.0], "STOP: TOTAL NO. OF ITERATIONS", "without converging (STOP: TOTAL"),
    ],
)
def test_a_failed_fit_says_why_in_words(x: list[float], message: str, expected: str) -> None:
    result = SimpleNamespace(success=False, x=np.array(x), message=message)
    verdict = clv_models._verdict(result, on_bound=False)
    assert expected in verdict and not verdict.endswith(": ")


@pytest.mark.parametrize(
    ("gradient", "converged"), [(3e-8, True), (1e-3, False)], ids=["stationary", "not"]
)
def test_a_line_search_that_stops_at_the_optimum_is_a_converged_fit(
    monkeypatch: pytest.MonkeyPatch, gradient: float, converged: bool
) -> None:
    """scipy's L-BFGS-B can end ABNORMAL (no lower point found) at the optimum itself:
    with a gradient ~0 that is a fit, with a real gradient it is not."""
    stopped = SimpleNamespace(
        x=np.log(np.array([1.5, 3.0, 12.0])),
        fun=1.0,
        jac=np.array([gradient, -gradient, gradient]),
        success=False,
        message="ABNORMAL: ",
        nit=19,
    )
    monkeypatch.setattr(clv_models, "minimize", lambda *args, **kwargs: stopped)
    fit = fit_gamma_gamma(np.array([1, 2, 3]), np.array([10.0, 20.0, 30.0]))
    assert fit.converged is converged
    assert ("stationary point" in fit.message) is converged
    assert ("ABNORMAL" in fit.message) is not converged
