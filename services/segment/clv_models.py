"""BG/NBD and Gamma-Gamma: the published likelihoods and predictions in numpy/scipy (pure).

- BG/NBD (Fader, Hardie and Lee 2005, "Counting your customers the easy way"): purchase
  counts while alive (Poisson, gamma(r, alpha) heterogeneity) and dropout after each
  purchase (geometric, beta(a, b) heterogeneity). Inputs are lifetimes' CLV summary:
  ``frequency`` x (repeat purchase periods), ``recency`` t_x and ``T``.
- Gamma-Gamma (Fader, Hardie and Lee 2005, "RFM and CLV"): the mean repeat spend
  ``monetary`` of customers with x > 0, gamma(p, nu) spend with nu ~ gamma(q, gamma).

Why not a library: lifetimes (a dev dependency, the reference these are checked
against in tests/segment/test_clv_models.py) has had no release since 2020 and fits by
numerical gradients over every customer; PyMC-Marketing pulls in pymc/pytensor. Here
both likelihoods have analytic gradients, and customers with the same (x, t_x, T) are
fitted once with a weight, so a million customers fit in seconds.

Parameters are optimised in log space (all are positive) with L-BFGS-B; a fit reports
whether the optimiser converged and whether the parameters are usable (finite, and the
Gamma-Gamma mean exists: q > 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, hyp2f1

#: Parameter names as published (``gamma`` is lifetimes' ``v``).
BGNBD_PARAMETERS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_PARAMETERS = ("p", "q", "gamma")

#: Predicted CLV sums 30-day steps, as lifetimes' ``customer_lifetime_value`` (freq "D").
CLV_STEP_DAYS = 30


@dataclass(frozen=True)
class Fit:
    """One maximum-likelihood fit: parameters, total log-likelihood, convergence."""

    model: str
    parameters: dict[str, float]
    log_likelihood: float
    customers: int
    converged: bool
    iterations: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "parameters": dict(self.parameters),
            "log_likelihood": self.log_likelihood,
            "customers": self.customers,
            "converged": self.converged,
            "iterations": self.iterations,
            "message": self.message,
        }


def _compress(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows of the columns and how many customers share each."""
    stacked = np.column_stack([np.asarray(c, dtype="float64") for c in columns])
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype("float64")


#: a log-parameter this close to the bound when the optimiser gives up is running to it
NEAR_BOUND = 1.0


#: a fit whose objective gradient (per customer, in log-parameters) is below this is at
#: its optimum: 1e-6 is ~100x the gradients of fits scipy itself calls converged
STATIONARY_GRADIENT = 1e-6


def _verdict(result: Any, on_bound: bool) -> str:
    """Why the fit is (not) usable, in words: scipy's bare "ABNORMAL: " (line search
    failure) says nothing; when a parameter was heading for the bound, say so, as a fit
    that reached it does."""
    bound = "a parameter ran to its bound (the data do not identify the model)"
    if on_bound:
        return bound
    if result.success:
        return str(result.message)
    reason = str(result.message).strip(": ") or "no reason given"
    if reason == "ABNORMAL":
        reason = "ABNORMAL: its line search found no better point"
    if np.any(np.abs(result.x) >= 12.0 - NEAR_BOUND):
        return f"{bound}; the optimiser stopped short of it ({reason})"
    return f"the optimiser stopped without converging ({reason})"


def _maximise(
    model: str,
    names: tuple[str, ...],
    objective: Any,
    start: np.ndarray,
    customers: int,
) -> Fit:
    result = minimize(
        objective,
        np.log(start),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-12.0, 12.0)] * len(start),
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
    )
    values = np.exp(result.x)
    on_bound = bool(np.any(np.abs(result.x) >= 12.0 - 1e-6))
    # L-BFGS-B can end "ABNORMAL" at the optimum itself: with ftol this tight, the line
    # search finds no lower point because there is none (seen with scipy 1.17 on a fit
    # whose gradient was 3e-8). A stationary point is a converged fit, whatever the
    # line search said; anywhere else ABNORMAL stays a failure.
    gradient = float(np.max(np.abs(result.jac))) if result.jac is not None else np.inf
    stationary = not result.success and gradient < STATIONARY_GRADIENT
    converged = (
        (bool(result.success) or stationary) and np.all(np.isfinite(values)) and not on_bound
    )
    message = (
        f"converged (the line search stopped at a stationary point, gradient {gradient:.1e})"
        if stationary and not on_bound
        else _verdict(result, on_bound)
    )
    return Fit(
        model=model,
        parameters={name: float(v) for name, v in zip(names, values, strict=True)},
        log_likelihood=float(-result.fun),
        customers=customers,
        converged=bool(converged),
        iterations=int(result.nit),
        message=message,
    )


def bgnbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer log-likelihood and its gradient (rows r, alpha, a, b) at ``params``."""
    r, alpha, a, b = (float(v) for v in params)
    repeat = x > 0
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    # the dropout-after-the-last-purchase term exists only for repeat buyers
    b_x1 = np.where(repeat, b + x - 1, 1.0)
    a4 = np.where(repeat, np.log(a) - np.log(b_x1) - (r + x) * np.log(alpha + t_x), -np.inf)
    tail = np.logaddexp(a3, a4)
    w = np.exp(a4 - tail)  # share of the dropout term (0 without repeats)
    ll = a1 + a2 + tail
    grad = np.empty((4, len(x)))
    grad[0] = (
        digamma(r + x)
        - digamma(r)
        + np.log(alpha)
        - (1 - w) * np.log(alpha + T)
        - w * np.log(alpha + t_x)
    )
    grad[1] = r / alpha - (r + x) * ((1 - w) / (alpha + T) + w / (alpha + t_x))
    psi_ab = digamma(a + b)
    psi_abx = digamma(a + b + x)
    grad[2] = psi_ab - psi_abx + w / a
    grad[3] = psi_ab + digamma(b + x) - digamma(b) - psi_abx - w / b_x1
    return ll, grad


def fit_bgnbd(frequency: Any, recency: Any, T: Any) -> Fit:
    """Maximum-likelihood BG/NBD over lifetimes-style summaries (any time unit)."""
    x0, t0, T0 = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
    (x, t_x, big_t), weight = _compress(x0, t0, T0)
    scale = float(np.mean(T0)) if len(T0) else 1.0

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        ll, grad = bgnbd_log_likelihood(params, x, t_x, big_t)
        if not np.all(np.isfinite(ll)):
            return 1e300, np.zeros_like(log_params)
        # mean negative log-likelihood keeps the optimiser's tolerances size-independent
        return float(-(weight @ ll) / len(x0)), -(grad @ weight) * params / len(x0)

    fit = _maximise("bgnbd", BGNBD_PARAMETERS, objective, np.array([1.0, scale, 1.0, 1.0]), len(x0))
    return _total(fit, len(x0))


def _total(fit: Fit, n: int) -> Fit:
    """The fit with the total (not mean) log-likelihood."""
    return Fit(
        model=fit.model,
        parameters=fit.parameters,
        log_likelihood=fit.log_likelihood * n,
        customers=fit.customers,
        converged=fit.converged,
        iterations=fit.iterations,
        message=fit.message,
    )


def _bgnbd(params: dict[str, float]) -> tuple[float, float, float, float]:
    return params["r"], params["alpha"], params["a"], params["b"]


def p_alive(params: dict[str, float], frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """The probability each customer is still active (has not dropped out) at ``T``."""
    r, alpha, a, b = _bgnbd(params)
    x, t_x, big_t = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
    log_ratio = (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
    odds = np.where(x > 0, np.exp(np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + log_ratio), 0)
    return 1.0 / (1.0 + odds)


def expected_purchases(
    params: dict[str, float], t: float, frequency: Any, recency: Any, T: Any
) -> np.ndarray:
    """Expected purchases in the next ``t`` periods, given each customer's history."""
    r, alpha, a, b = _bgnbd(params)
    x, t_x, big_t = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
    if t <= 0:
        return np.zeros(len(x))
    ra, rb, rc = r + x, b + x, a + b + x - 1
    z = t / (alpha + big_t + t)
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_hyp = np.log(hyp2f1(ra, rb, rc, z))
        # Euler's transformation where the direct series overflows (as lifetimes does)
        alt = np.log(hyp2f1(rc - ra, rc - rb, rc, z)) + (rc - ra - rb) * np.log1p(-z)
    ln_hyp = np.where(np.isfinite(ln_hyp), ln_hyp, alt)
    numerator = (rc / (a - 1)) * -np.expm1(
        ln_hyp + ra * (np.log(alpha + big_t) - np.log(alpha + big_t + t))
    )
    return numerator * p_alive(params, x, t_x, big_t)


def gamma_gamma_log_likelihood(
    params: np.ndarray, x: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer log-likelihood of mean spend ``m`` over ``x`` purchases, and its gradient."""
    p, q, v = (float(value) for value in params)
    px = p * x
    log_xm_v = np.log(x * m + v)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_xm_v
    )
    psi = digamma(px + q)
    grad = np.empty((3, len(x)))
    grad[0] = x * (psi - digamma(px) + np.log(m) + np.log(x) - log_xm_v)
    grad[1] = psi - digamma(q) + np.log(v) - log_xm_v
    grad[2] = q / v - (px + q) / (x * m + v)
    return ll, grad


def fit_gamma_gamma(frequency: Any, monetary: Any) -> Fit:
    """Maximum-likelihood Gamma-Gamma over repeat buyers (frequency > 0, monetary > 0)."""
    x0, m0 = (np.asarray(v, dtype="float64") for v in (frequency, monetary))
    keep = (x0 > 0) & (m0 > 0)
    x0, m0 = x0[keep], m0[keep]
    (x, m), weight = _compress(x0, m0)
    n = len(x0)
    scale = float(np.mean(m0)) if n else 1.0

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        ll, grad = gamma_gamma_log_likelihood(params, x, m)
        if not np.all(np.isfinite(ll)):
            return 1e300, np.zeros_like(log_params)
        return float(-(weight @ ll) / n), -(grad @ weight) * params / n

    fit = _maximise(
        "gamma_gamma", GAMMA_GAMMA_PARAMETERS, objective, np.array([1.0, 2.0, scale]), n
    )
    if fit.converged and fit.parameters["q"] <= 1:
        # the population mean spend p * gamma / (q - 1) does not exist
        fit = Fit(fit.model, fit.parameters, fit.log_likelihood, n, False, fit.iterations, "q <= 1")
    return _total(fit, n)


def expected_order_value(params: dict[str, float], frequency: Any, monetary: Any) -> np.ndarray:
    """Expected spend per purchase: the population mean shrunk towards each customer's mean."""
    p, q, v = params["p"], params["q"], params["gamma"]
    x, m = (np.asarray(value, dtype="float64") for value in (frequency, monetary))
    m = np.where(x > 0, m, 0.0)
    return p * (v + x * m) / (p * x + q - 1)


def predicted_clv(
    bgnbd: dict[str, float],
    order_value: np.ndarray,
    frequency: Any,
    recency: Any,
    T: Any,
    horizon_months: int,
    monthly_discount_rate: float,
) -> np.ndarray:
    """Discounted expected spend over ``horizon_months`` 30-day months (lifetimes' definition).

    Each month's expected purchases times the expected order value, discounted by
    ``(1 + monthly_discount_rate) ** month``. Periods are days.
    """
    x, t_x, big_t = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
    total = np.zeros(len(x))
    before = np.zeros(len(x))
    for step in range(1, int(horizon_months) + 1):
        upto = expected_purchases(bgnbd, step * CLV_STEP_DAYS, x, t_x, big_t)
        total += order_value * (upto - before) / (1 + monthly_discount_rate) ** step
        before = upto
    return total
