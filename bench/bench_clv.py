"""Predictive CLV benchmark: fit BG/NBD + Gamma-Gamma and score N customers (pure, no DB).

usage: python bench/bench_clv.py [--quick] [--customers N] [--baseline N] [--figures PATH]

1. Synthetic purchases of N customers (default 1,000,000) drawn from the BG/NBD and
   Gamma-Gamma stories over two years of daily periods (known parameters).
2. Ours, timed by phase: the per-currency CLV summary from the purchases
   (``predictive.customer_summaries``), the BG/NBD fit, the Gamma-Gamma fit, scoring
   (p_alive, expected purchases 30/90/365 d, expected order value, 12-month discounted
   CLV, percentiles). Target: fit + scoring < 60 s on the 2-core machine.
3. Baseline in the same run: lifetimes' BetaGeoFitter + GammaGammaFitter fitted on a
   subsample (default 20,000 customers) and scoring it, beside ours on the same
   subsample (the ratio is the figure to compare; lifetimes on 1,000,000 would take
   minutes). Parameters of both are printed, and ours against the generating ones.

Wall-clock and CPU seconds are printed with the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.figures import Figure, peak_rss_mib, record, use_sink  # noqa: E402
from services.segment import clv_models  # noqa: E402
from services.segment.predictive import customer_summaries, percentiles, predict  # noqa: E402

AS_OF = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
TRUE_BGNBD = {"r": 0.25, "alpha": 30.0, "a": 0.8, "b": 2.5}
TRUE_GG = {"p": 6.0, "q": 4.0, "gamma": 15.0}


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def synthetic_purchases(customers: int, seed: int = 1) -> pd.DataFrame:
    """Purchase days from BG/NBD (first purchase up to 730 days ago), spend from Gamma-Gamma."""
    rng = np.random.default_rng(seed)
    big_t = rng.integers(0, 730, customers).astype("float64")  # days since the first purchase
    rate = rng.gamma(TRUE_BGNBD["r"], 1 / TRUE_BGNBD["alpha"], customers)
    dropout = rng.beta(TRUE_BGNBD["a"], TRUE_BGNBD["b"], customers)
    spend_rate = rng.gamma(TRUE_GG["q"], 1 / TRUE_GG["gamma"], customers)
    ids = np.array([f"c{i:07d}" for i in range(customers)], dtype=object)
    parts_customer = [np.arange(customers)]
    parts_day = [np.zeros(customers)]
    now = np.zeros(customers)
    active = np.ones(customers, dtype=bool)
    while active.any():
        index = np.flatnonzero(active)
        now[index] += rng.exponential(1 / np.maximum(rate[index], 1e-12))
        bought = now[index] <= big_t[index]
        active[index[~bought]] = False
        index = index[bought]
        parts_customer.append(index)
        parts_day.append(now[index])
        active[index[rng.random(len(index)) < dropout[index]]] = False
    customer = np.concatenate(parts_customer)
    day = np.floor(np.concatenate(parts_day))
    purchased = pd.Timestamp(AS_OF) - pd.to_timedelta(big_t[customer] - day, unit="D")
    amount = rng.gamma(TRUE_GG["p"], 1 / spend_rate[customer])
    return pd.DataFrame(
        {
            "customer_id": ids[customer],
            "order_id": np.arange(len(customer)).astype(str),
            "purchased_at": purchased,
            "created_at": purchased,
            "net_e4": np.rint(amount * 10_000).astype("int64") + 1,
            "currency": "EUR",
        }
    )


def ours(
    summary: pd.DataFrame,
) -> tuple[dict[str, float], dict[str, float], dict[str, tuple[float, float]]]:
    phases: dict[str, tuple[float, float]] = {}
    wall, spent = time.perf_counter(), cpu()
    bgnbd = clv_models.fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    phases["fit BG/NBD"] = (time.perf_counter() - wall, cpu() - spent)
    wall, spent = time.perf_counter(), cpu()
    gg = clv_models.fit_gamma_gamma(summary["frequency"], summary["monetary_value"])
    phases["fit Gamma-Gamma"] = (time.perf_counter() - wall, cpu() - spent)
    assert bgnbd.converged and gg.converged, (bgnbd.message, gg.message)
    wall, spent = time.perf_counter(), cpu()
    predicted = predict(summary, bgnbd.parameters, gg.parameters, 12, 0.01)
    percentiles(predicted["predicted_clv"].to_numpy())
    phases["score"] = (time.perf_counter() - wall, cpu() - spent)
    return bgnbd.parameters, gg.parameters, phases


def lifetimes_baseline(summary: pd.DataFrame) -> tuple[dict[str, float], dict[str, float], float]:
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    warnings.simplefilter("ignore")
    started = time.perf_counter()
    bg = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    repeat = summary[summary["frequency"] > 0]
    gg = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    bg.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"])
    for days in (30, 90, 365):
        bg.conditional_expected_number_of_purchases_up_to_time(
            days, summary["frequency"], summary["recency"], summary["T"]
        )
    gg.customer_lifetime_value(
        bg,
        summary["frequency"],
        summary["recency"],
        summary["T"],
        summary["monetary_value"],
        time=12,
        discount_rate=0.01,
        freq="D",
    )
    seconds = time.perf_counter() - started
    params = {k: float(bg.params_[k]) for k in ("r", "alpha", "a", "b")}
    return (
        params,
        {"p": float(gg.params_["p"]), "q": float(gg.params_["q"]), "gamma": float(gg.params_["v"])},
        seconds,
    )


def database_run(purchases: pd.DataFrame) -> dict[str, float]:
    """The service's run on SQLite: purchases stored as order states, then run_fits."""
    import tempfile

    from services.segment.app import MIGRATIONS
    from services.segment.config import Settings
    from services.segment.predictive import ClvOptions, run_fits
    from shared.db import Database, run_migrations

    with tempfile.TemporaryDirectory(prefix="bench-clv") as tmp:
        url = f"sqlite:///{tmp}/segment.db"
        run_migrations(MIGRATIONS, url)
        db = Database.from_url(url, sqlite_pragmas=Settings().sqlite_pragmas)
        stamps = purchases["purchased_at"].dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()
        rows = list(
            zip(
                purchases["order_id"].tolist(),
                purchases["customer_id"].tolist(),
                stamps,
                stamps,
                stamps,
                purchases["net_e4"].tolist(),
                strict=True,
            )
        )
        with db.unit_of_work() as session:
            cursor = session.connection().connection.cursor()
            cursor.executemany(
                "INSERT INTO order_states (order_id, customer_id, status, version_at, "
                "status_rank, valid, created_at, purchased_at, net_e4, currency, channel, "
                "categories, province, city) VALUES (?, ?, 'paid', ?, 1, 1, ?, ?, ?, 'EUR', "
                "NULL, '[]', NULL, NULL)",
                rows,
            )
        wall, spent = time.perf_counter(), cpu()
        with db.unit_of_work() as session:
            run = run_fits(session, AS_OF, "UTC", ClvOptions())
            flushed = time.perf_counter() - wall
        phases = dict(run.phases)
        phases["commit"] = time.perf_counter() - wall - flushed
        phases["total"] = time.perf_counter() - wall
        phases["total CPU"] = cpu() - spent
        db.engine.dispose()
        return phases


def show(name: str, params: dict[str, float]) -> str:
    return f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in params.items())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20,000 customers, 5,000 baseline")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--baseline", type=int)
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    parser.add_argument(
        "--database", action="store_true", help="also the service's run on SQLite (read, write)"
    )
    args = parser.parse_args()
    use_sink(args.figures)
    args.customers = args.customers or (20_000 if args.quick else 1_000_000)
    args.baseline = args.baseline or (5_000 if args.quick else 20_000)
    print(f"load average before: {load()}")
    started = time.perf_counter()
    purchases = synthetic_purchases(args.customers)
    print(
        f"synthetic data: {args.customers:,} customers, {len(purchases):,} purchases "
        f"({time.perf_counter() - started:.1f} s to generate)"
    )

    wall, spent = time.perf_counter(), cpu()
    summary = customer_summaries(purchases, AS_OF, "UTC")
    summary_phase = (time.perf_counter() - wall, cpu() - spent)
    repeat = int((summary["frequency"] > 0).sum())
    print(f"summary: {len(summary):,} customers, {repeat:,} repeat buyers")
    bgnbd, gg, phases = ours(summary)
    phases = {"CLV summary from purchases": summary_phase, **phases}
    print(f"\nours, {len(summary):,} customers (wall s / CPU s):")
    for name, (w, c) in phases.items():
        print(f"  {name:28s} {w:7.2f} / {c:7.2f}")
    fit_and_score = sum(w for n, (w, _) in phases.items() if n != "CLV summary from purchases")
    total = sum(w for w, _ in phases.values())
    print(f"  {'fit + scoring':28s} {fit_and_score:7.2f}   (target < 60 s)")
    print(f"  {'with the summary':28s} {total:7.2f}")
    print("  " + show("BG/NBD", bgnbd) + "   (generated with " + show("", TRUE_BGNBD)[2:] + ")")
    print("  " + show("Gamma-Gamma", gg) + "   (generated with " + show("", TRUE_GG)[2:] + ")")
    print(f"  peak RSS {peak_rss_mib():,.0f} MiB")

    sample = summary.sample(n=min(args.baseline, len(summary)), random_state=3)
    theirs_bg, theirs_gg, theirs_seconds = lifetimes_baseline(sample)
    wall = time.perf_counter()
    sample_bg, sample_gg, _ = ours(sample)
    ours_seconds = time.perf_counter() - wall
    print(f"\nbaseline, the same {len(sample):,}-customer subsample, fit + scoring:")
    print(
        f"  lifetimes {theirs_seconds:7.2f} s   "
        + show("BG/NBD", theirs_bg)
        + "; "
        + show("GG", theirs_gg)
    )
    print(
        f"  ours      {ours_seconds:7.2f} s   "
        + show("BG/NBD", sample_bg)
        + "; "
        + show("GG", sample_gg)
    )
    print(f"  lifetimes / ours: {theirs_seconds / ours_seconds:.1f}x")
    per_customer = theirs_seconds / len(sample)
    print(
        f"  ours on {len(summary):,} customers vs lifetimes' rate extrapolated linearly: "
        f"{fit_and_score:.1f} s vs ~{per_customer * len(summary):.0f} s"
    )
    record(
        Figure(
            "clv",
            f"BG/NBD + Gamma-Gamma fit and scoring, {len(sample):,}-customer subsample (s)",
            round(ours_seconds, 3),
            "s",
            "lifetimes, same subsample (s)",
            round(theirs_seconds, 3),
            size=len(sample),
        )
    )
    record(
        Figure(
            "clv",
            f"fit + scoring, {len(summary):,} customers (s)",
            round(fit_and_score, 2),
            "s",
            target="< 60" if len(summary) >= 1_000_000 else None,
            size=len(summary),
            extra={"peak_rss_mib": round(peak_rss_mib())},
        )
    )
    if args.database:
        phases = database_run(purchases)
        print(f"\nthe service's run_fits on SQLite, {len(summary):,} customers (wall s):")
        for name, seconds in phases.items():
            print(f"  {name:28s} {seconds:7.2f}")
    print(f"load average after: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
