"""Predictive CLV through the service: fits per currency kept, predictions stored and
read, custom segments on predictions, honest degradation (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from services.segment import (
    clv_runs,
    per_event,
    point_in_time,
    predictive,
    rescoring,
    segment_admin,
)
from services.segment.clv_repository import ClvFits, Predictions, valid_purchases
from services.segment.rules import Condition
from shared.db import Database
from tests.conftest import outbox_events
from tests.segment.helpers import NOW, database, erased, order, recorded

OPTIONS = predictive.ClvOptions(min_customers=100, min_repeat_customers=20, min_history_days=90)


def simulated_orders(customers: int, currency: str, seed: int) -> list:
    """Orders from the BG/NBD story: Poisson purchases at a gamma-distributed daily rate,
    dropout after each purchase with a beta-distributed probability, over the last year;
    spend per order gamma-distributed around a gamma-distributed customer mean."""
    rng = np.random.default_rng(seed)
    orders = []
    for c in range(customers):
        rate = rng.gamma(0.5, 1 / 20)  # about one purchase per 40 days on average
        dropout = rng.beta(1.0, 3.0)
        spend_rate = rng.gamma(4.0, 1 / 60)  # Gamma-Gamma: each customer's own mean spend
        day = float(rng.uniform(40, 365))  # days ago of the first purchase
        k = 0
        while day > 0:
            amount = f"{rng.gamma(6.0, 1 / spend_rate) + 1:.2f}"
            orders.append(
                order(
                    f"{currency}-{c}-{k}",
                    f"{currency}-c{c}",
                    days_ago=day,
                    amount=amount,
                    currency=currency,
                )
            )
            k += 1
            if rng.random() < dropout:
                break
            day -= float(rng.exponential(1 / rate))
    return orders


def seeded(url: str) -> Database:
    db = database(url)
    orders = simulated_orders(300, "EUR", 1) + simulated_orders(12, "USD", 2)
    with db.unit_of_work() as session:
        per_event.apply_messages(session, [recorded(o) for o in orders], NOW)
    return db


def test_fits_per_currency_are_kept_and_predictions_stored(db_url: str) -> None:
    db = seeded(db_url)
    with db.unit_of_work() as session:
        run = clv_runs.run(session, NOW, OPTIONS)
    fits = {f.currency: f for f in run.fits}
    assert set(fits) == {"EUR", "USD"}
    eur, usd = fits["EUR"], fits["USD"]
    assert eur.status == "ok" and eur.reason is None
    assert eur.customers == 300 and 20 <= eur.repeat_customers < 300
    assert eur.models["bgnbd"]["converged"] and eur.models["gamma_gamma"]["converged"]
    assert eur.models["bgnbd"]["log_likelihood"] < 0
    assert set(eur.models["bgnbd"]["parameters"]) == {"r", "alpha", "a", "b"}
    assert eur.models["gamma_gamma"]["customers"] == eur.repeat_customers
    # the data window starts at the currency's first purchase (its time, not the run's)
    with db.unit_of_work() as session:
        purchases = valid_purchases(session, created=False)
    first = purchases[purchases["currency"] == "EUR"]["purchased_at"].min()
    assert pd.Timestamp(eur.window_start) == pd.Timestamp(first)
    # below the minimum: kept with the reason, no model numbers
    assert usd.status == "insufficient_data"
    assert "12 customers (minimum 100)" in (usd.reason or "")
    assert usd.models == {}

    with db.unit_of_work() as session:
        stored = Predictions(session).frame()
        # exactly the pure predictions from the customers' summaries and the stored fit
        summaries = predictive.customer_summaries(valid_purchases(session), NOW, "Asia/Shanghai")
    assert set(stored["currency"]) == {"EUR"} and len(stored) == 300
    eur_summary = summaries[summaries["currency"] == "EUR"]
    expected = predictive.predict(
        eur_summary,
        eur.models["bgnbd"]["parameters"],
        eur.models["gamma_gamma"]["parameters"],
        12,
        0.01,
    )
    stored = stored.set_index("customer_id").loc[expected.index]
    np.testing.assert_allclose(stored["p_alive"], expected["p_alive"], rtol=1e-12)
    np.testing.assert_allclose(
        stored["expected_purchases_90d"], expected["expected_purchases_90d"], rtol=1e-12
    )
    np.testing.assert_array_equal(
        stored["predicted_clv_e4"], np.rint(expected["predicted_clv"] * 10_000).astype("int64")
    )
    assert ((stored["p_alive"] > 0) & (stored["p_alive"] <= 1)).all()
    assert (stored["expected_purchases_30d"] <= stored["expected_purchases_90d"]).all()
    assert (stored["expected_purchases_90d"] <= stored["expected_purchases_365d"]).all()
    assert stored["predicted_clv_percentile"].between(0, 100).all()
    top = stored["predicted_clv_percentile"] >= 80
    assert abs(top.mean() - 0.2) < 0.02


def test_a_run_again_keeps_the_history_and_replaces_the_predictions(db_url: str) -> None:
    db = seeded(db_url)
    with db.unit_of_work() as session:
        first = clv_runs.run(session, NOW, OPTIONS)
    later = NOW + timedelta(days=1)
    with db.unit_of_work() as session:
        second = clv_runs.run(session, later, OPTIONS)
        history = ClvFits(session).history("EUR", 10)
        stored = Predictions(session).frame()
    assert [f.id for f in history] == [
        next(f.id for f in second.fits if f.currency == "EUR"),
        next(f.id for f in first.fits if f.currency == "EUR"),
    ]
    assert len(stored) == 300 and set(stored["fit_id"]) == {history[0].id}


def test_no_convergence_publishes_no_numbers(db_url: str) -> None:
    db = database(db_url)
    one_timers = [order(f"o{i}", f"c{i}", days_ago=10 + i, currency="GBP") for i in range(150)]
    with db.unit_of_work() as session:
        per_event.apply_messages(session, [recorded(o) for o in one_timers], NOW)
    loose = predictive.ClvOptions(min_customers=1, min_repeat_customers=0, min_history_days=0)
    with db.unit_of_work() as session:
        run = clv_runs.run(session, NOW, loose)
        stored = Predictions(session).frame()
        views = predictive.stored_predictions(session, [("c1", "GBP")])
    (fit,) = run.fits
    assert fit.status == "not_converged"
    assert fit.reason and fit.reason.startswith("BG/NBD")
    assert stored.empty
    assert views["c1"].status == "not_converged" and views["c1"].values == {}


def test_segments_on_predictions_follow_each_run(db_url: str) -> None:
    db = seeded(db_url)
    with db.unit_of_work() as session:
        segment_admin.create_segment(
            session,
            "likely-gone",
            "Likely gone",
            None,
            Condition(field="p_alive", op="lt", value=0.3),
        )
        segment_admin.create_segment(
            session,
            "top-clv",
            "Top 20 % predicted CLV",
            None,
            Condition(field="predicted_clv_percentile", op="gte", value=80),
        )
        rescoring.rescore_all(session, NOW, recompute=False)
        session.execute(text("DELETE FROM outbox"))
    with db.unit_of_work() as session:
        # before any fit: no predictions, no members
        assert session.execute(text("SELECT count(*) FROM segment_members")).scalar() == 0
        run = clv_runs.run(session, NOW, OPTIONS)
        stored = Predictions(session).frame().set_index("customer_id")
        members = session.execute(text("SELECT segment_id, customer_id FROM segment_members")).all()
    gone = {c for s, c in members if s == "likely-gone"}
    top = {c for s, c in members if s == "top-clv"}
    assert gone == set(stored.index[stored["p_alive"] < 0.3]) and gone
    assert top == set(stored.index[stored["predicted_clv_percentile"] >= 80]) and top
    # each customer who entered a segment was published once, saying which
    events = outbox_events(db)
    entered = {e.data.customer_id: set(e.data.segments_entered) for e in events}
    assert run.rescoring.changed == len(events) == len(gone | top)
    for customer_id in gone | top:
        assert entered[customer_id] == {s for s, c in members if c == customer_id}
    # and with its stored predictions
    for event in events:
        carried = event.data.predictions
        row = stored.loc[event.data.customer_id]
        assert carried is not None and carried.fit_id == row["fit_id"]
        assert carried.as_of == NOW and carried.currency == "EUR"
        assert carried.p_alive == row["p_alive"]
        assert carried.predicted_clv == Decimal(int(row["predicted_clv_e4"])).scaleb(-4)
        assert carried.predicted_clv_percentile == row["predicted_clv_percentile"]
    # the same data again: nobody changes
    with db.unit_of_work() as session:
        again = clv_runs.run(session, NOW, OPTIONS)
    assert again.rescoring.changed == 0

    # a new order of one of them: the per-event path recomputes their predictions from the
    # stored fit (the purchase counts at once), so the verdict and the event follow it
    customer = sorted(gone)[0]
    fit = run.fits[0]
    assert fit.currency == "EUR"
    with db.unit_of_work() as session:
        per_event.apply_messages(
            session, [recorded(order("extra", customer, days_ago=0.5, currency="EUR"))], NOW
        )
        kept = (
            session.execute(
                text("SELECT segment_id FROM segment_members WHERE customer_id = :c"),
                {"c": customer},
            )
            .scalars()
            .all()
        )
        purchases = valid_purchases(session, [customer])
        after = Predictions(session).frame().set_index("customer_id").loc[customer]
    summary = predictive.customer_summaries(purchases, NOW, "Asia/Shanghai")
    expected = predictive.predict(
        summary,
        fit.models["bgnbd"]["parameters"],
        fit.models["gamma_gamma"]["parameters"],
        12,
        0.01,
    )
    assert after["p_alive"] == pytest.approx(float(expected["p_alive"].iloc[0]))
    assert after["p_alive"] >= 0.3 > stored.loc[customer, "p_alive"]
    assert "likely-gone" not in kept
    # the run's rank stays (a percentile belongs to a run's distribution)
    assert after["predicted_clv_percentile"] == stored.loc[customer, "predicted_clv_percentile"]
    event = [e for e in outbox_events(db) if e.data.customer_id == customer][-1]
    assert event.data.current.last_order_at > NOW - timedelta(days=1)
    assert event.data.predictions is not None
    assert event.data.predictions.p_alive == after["p_alive"]
    assert "likely-gone" in event.data.segments_left
    # the same order again (a duplicate): the same numbers
    with db.unit_of_work() as session:
        per_event.apply_messages(
            session, [recorded(order("extra", customer, days_ago=0.5, currency="EUR"))], NOW
        )
        again_row = Predictions(session).frame().set_index("customer_id").loc[customer]
    assert again_row["p_alive"] == after["p_alive"]


def test_a_customer_who_moves_currency_loses_the_old_currencys_numbers(db_url: str) -> None:
    db = seeded(db_url)
    with db.unit_of_work() as session:
        clv_runs.run(session, NOW, OPTIONS)
    with db.unit_of_work() as session:
        per_event.apply_messages(
            session, [recorded(order("moved", "EUR-c1", days_ago=0.5, currency="USD"))], NOW
        )
        view = predictive.stored_predictions(session, [("EUR-c1", "USD")])["EUR-c1"]
    assert view.status != "ok" and view.values == {}


def test_erasure_and_merge_drop_the_customers_predictions(db_url: str) -> None:
    db = seeded(db_url)
    with db.unit_of_work() as session:
        clv_runs.run(session, NOW, OPTIONS)
    with db.unit_of_work() as session:
        per_event.apply_messages(session, [erased("EUR-c3")], NOW)
    with db.unit_of_work() as session:
        stored = Predictions(session).frame()
    assert "EUR-c3" not in set(stored["customer_id"]) and len(stored) == 299


def test_predictions_as_of_a_past_time_use_the_orders_known_then(db_url: str) -> None:
    db = seeded(db_url)
    past = NOW - timedelta(days=30)
    with db.unit_of_work() as session:
        before = clv_runs.run(session, past, OPTIONS).fits[0]
        purchases = valid_purchases(session)
    buyer = purchases.groupby("customer_id").size().idxmax()
    with db.unit_of_work() as session:
        # with only a fit observing later than the time asked about: not fitted then
        early = predictive.predictions_as_of(
            session, [buyer], past - timedelta(days=1), "Asia/Shanghai"
        )[buyer]
        clv_runs.run(session, NOW, OPTIONS)
    with db.unit_of_work() as session:
        now_view = predictive.stored_predictions(session, [(buyer, "EUR")])[buyer]
        then_view = predictive.predictions_as_of(session, [buyer], past, "Asia/Shanghai")[buyer]
    assert early.status == "not_fitted" and early.values == {}
    assert now_view.status == then_view.status == "ok"
    assert then_view.values["predicted_clv_percentile"] is None
    # the fit that observed by then, not the newer one
    fit = then_view.fit
    assert fit is not None and fit.id == before.id and fit.currency == "EUR"
    assert now_view.fit is not None and now_view.fit.id != before.id
    mine = purchases[purchases["customer_id"] == buyer]
    summary = predictive.customer_summaries(mine, past, "Asia/Shanghai", cutoff=True)
    expected = predictive.predict(
        summary,
        fit.models["bgnbd"]["parameters"],
        fit.models["gamma_gamma"]["parameters"],
        12,
        0.01,
    )
    assert then_view.values["p_alive"] == pytest.approx(float(expected["p_alive"].iloc[0]))
    assert then_view.as_of == past


def test_customer_summaries_follow_the_latest_purchase_currency() -> None:
    at = pd.Timestamp(NOW)
    purchases = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "order_id": ["1", "2", "3", "4"],
            "purchased_at": [at - pd.Timedelta(days=d) for d in (50, 20, 10, 5)],
            "created_at": [at - pd.Timedelta(days=d) for d in (50, 20, 10, 5)],
            "net_e4": [100_000, 200_000, 300_000, 50_000],
            "currency": ["USD", "EUR", "EUR", "USD"],
        }
    )
    summary = predictive.customer_summaries(purchases, NOW, "UTC")
    assert summary.loc["a", "currency"] == "EUR"
    # only the EUR purchases: two days, one repeat
    assert summary.loc["a", "frequency"] == 1 and summary.loc["a", "T"] == 20
    assert summary.loc["a", "monetary_value"] == 30.0
    assert summary.loc["b", "currency"] == "USD" and summary.loc["b", "frequency"] == 0


def test_a_customer_newer_than_the_fit_has_no_numbers(db_url: str) -> None:
    db = seeded(db_url)
    with db.unit_of_work() as session:
        clv_runs.run(session, NOW, OPTIONS)
    with db.unit_of_work() as session:
        per_event.apply_messages(
            session, [recorded(order("new-1", "newcomer", days_ago=1, currency="EUR"))], NOW
        )
        view = predictive.stored_predictions(session, [("newcomer", "EUR")])["newcomer"]
        nobody = predictive.stored_predictions(session, [("prospect", None)])["prospect"]
    assert view.status == "not_fitted" and view.values == {}
    assert view.reason is not None and "no prediction in EUR" in view.reason
    assert nobody.status == "no_purchase" and nobody.values == {}


def test_valid_purchases_read_the_stored_instants_exactly(db_url: str) -> None:
    db = database(db_url)
    made = [
        order("early", "x", days_ago=10000.123456789),  # 1999, fractional microseconds
        order("late", "x", days_ago=0.000001),
        order("unpaid", "x", days_ago=1, status="created"),
    ]
    with db.unit_of_work() as session:
        per_event.apply_messages(session, [recorded(o) for o in made], NOW)
    with db.unit_of_work() as session:
        everyone = valid_purchases(session)
        mine = valid_purchases(session, ["x", "nobody"])
        lean = valid_purchases(session, created=False)
    for frame in (everyone, mine):
        got = frame.set_index("order_id")
        assert sorted(got.index) == ["early", "late"]
        for o in made[:2]:
            assert got.loc[o.order_id, "purchased_at"] == pd.Timestamp(o.paid_at)
            assert got.loc[o.order_id, "created_at"] == pd.Timestamp(o.created_at)
    assert "created_at" not in lean.columns and len(lean) == 2


def test_the_subject_access_export_includes_the_predictions(db_url: str) -> None:
    from services.segment.subject_export import export_section

    db = seeded(db_url)
    with db.unit_of_work() as session:
        clv_runs.run(session, NOW, OPTIONS)
        stored = Predictions(session).frame().set_index("customer_id")
        section = export_section(session, ["EUR-c1", "USD-c1"])
    by_id = {s["customer_id"]: s for s in section["scores"]}
    eur = by_id["EUR-c1"]["predictions"]
    assert eur["status"] == "ok" and eur["p_alive"] == stored.loc["EUR-c1", "p_alive"]
    usd = by_id["USD-c1"]["predictions"]
    assert usd["status"] == "insufficient_data" and usd["p_alive"] is None


def test_the_gauges_refresh_from_the_database(db_url: str) -> None:
    from prometheus_client import REGISTRY

    from services.segment import clv_metrics

    db = seeded(db_url)
    with db.unit_of_work() as session:
        clv_runs.run(session, NOW, OPTIONS)
        stored = Predictions(session).frame()
    # another process (or this one after a restart) knows nothing yet
    for gauge in (clv_metrics.FIT_OK, *clv_metrics.FIGURES.values()):
        gauge.clear()
    with db.unit_of_work() as session:
        clv_metrics.refresh(session)

    def value(name: str, currency: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"currency": currency})

    assert value("crm_segment_clv_fit_ok", "EUR") == 1.0
    assert value("crm_segment_clv_fit_ok", "USD") == 0.0
    assert value("crm_segment_clv_customers_predicted", "EUR") == 300.0
    assert value("crm_segment_predicted_clv_total", "EUR") == pytest.approx(
        stored["predicted_clv_e4"].sum() / 10_000
    )
    assert value("crm_segment_p_alive_mean", "EUR") == pytest.approx(stored["p_alive"].mean())
    assert value("crm_segment_predicted_clv_total", "USD") is None


def test_predictions_as_of_follow_the_fit_in_force_then_with_its_status(db_url: str) -> None:
    db = seeded(db_url)
    past = NOW - timedelta(days=30)
    buyer = "EUR-c0"
    with db.unit_of_work() as session:
        older = clv_runs.run(session, past, OPTIONS).fits[0]
        # the newer run withdraws EUR's numbers (too few customers for the minimum)
        starved = predictive.ClvOptions(
            min_customers=10_000, min_repeat_customers=20, min_history_days=90
        )
        clv_runs.run(session, NOW, starved)
    with db.unit_of_work() as session:
        plain = predictive.stored_predictions(session, [(buyer, "EUR")])[buyer]
        now = predictive.predictions_as_of(session, [buyer], NOW, "Asia/Shanghai")[buyer]
        between = predictive.predictions_as_of(
            session, [buyer], NOW - timedelta(days=1), "Asia/Shanghai"
        )[buyer]
    assert older.currency == "EUR" and older.status == "ok"
    assert plain.status == "insufficient_data" and plain.values == {}
    # as_of = now: the fit in force is the one that withdrew the numbers, not the older one
    assert now.status == "insufficient_data" and now.values == {}
    assert now.reason == plain.reason and now.fit is not None and now.fit.id != older.id
    # before the withdrawing run, the older fit was in force and published numbers
    assert between.status == "ok" and between.fit is not None and between.fit.id == older.id
    assert between.values["p_alive"] is not None


def test_predictions_as_of_count_a_payment_refunded_after_then(db_url: str) -> None:
    """Valid time, as the scores: paid on day 1, refunded on day 3, asked about day 2."""
    db = seeded(db_url)
    with db.unit_of_work() as session:
        clv_runs.run(session, NOW, OPTIONS)
    paid = order("late-1", "late", days_ago=-1, amount="80.00", currency="EUR")
    refunded = order(
        "late-1",
        "late",
        days_ago=-1,
        amount="80.00",
        currency="EUR",
        status="refunded",
        refunded="80.00",
        version_minutes=2 * 24 * 60,
    )
    with db.unit_of_work() as session:
        per_event.apply_messages(session, [recorded(paid), recorded(refunded)], NOW)
    then = NOW + timedelta(days=2)
    with db.unit_of_work() as session:
        view = predictive.predictions_as_of(session, ["late"], then, "Asia/Shanghai")["late"]
        scores = point_in_time.score_customers(session, ["late"], then)[0].row
        after = predictive.predictions_as_of(
            session, ["late"], NOW + timedelta(days=4), "Asia/Shanghai"
        )["late"]
    assert scores["frequency"] == 1
    assert view.status == "ok" and view.currency == "EUR", view.reason
    assert view.values["p_alive"] == pytest.approx(1.0)
    assert after.status == "no_purchase"
