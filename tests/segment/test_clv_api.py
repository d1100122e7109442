"""The predictive CLV API: fits on demand, predictions in the scores, the CLV report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from services.segment import per_event
from services.segment.app import create_app
from services.segment.config import Settings
from tests.conftest import ADMIN_KEY
from tests.segment.helpers import NOW, recorded
from tests.segment.test_predictive import simulated_orders

HEADERS = {"X-API-Key": ADMIN_KEY}
READER = {"X-API-Key": "reader-key"}


@pytest.fixture
def client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        api_keys={"reader-key": ["segment:read"]},
        run_consumer=False,
        rescore_at_start=False,
    )
    app = create_app(settings)
    runtime = app.state.runtime
    runtime.extras["clock"] = lambda: NOW
    orders = simulated_orders(300, "EUR", 1) + simulated_orders(12, "USD", 2)
    with TestClient(app) as test_client:
        runtime.relay.stop()
        with runtime.db.unit_of_work() as session:
            per_event.apply_messages(session, [recorded(o) for o in orders], NOW)
        yield test_client


def test_predictions_before_and_after_a_fit(client: TestClient) -> None:
    before = client.get("/v1/customers/EUR-c1/scores", headers=READER).json()
    assert before["predictions"] == {
        "status": "not_fitted",
        "reason": "no fit for EUR yet",
        "currency": "EUR",
        "fit_id": None,
        "as_of": None,
        "p_alive": None,
        "expected_purchases_30d": None,
        "expected_purchases_90d": None,
        "expected_purchases_365d": None,
        "expected_order_value": None,
        "predicted_clv": None,
        "predicted_clv_percentile": None,
        "horizon_months": None,
        "monthly_discount_rate": None,
    }
    assert client.post("/v1/clv/fits", headers=READER).status_code == 403
    run = client.post("/v1/clv/fits", headers=HEADERS)
    assert run.status_code == 200, run.text
    fits = {f["currency"]: f for f in run.json()["fits"]}
    assert fits["EUR"]["status"] == "ok"
    assert set(fits["EUR"]["bgnbd"]["parameters"]) == {"r", "alpha", "a", "b"}
    assert set(fits["EUR"]["gamma_gamma"]["parameters"]) == {"p", "q", "gamma"}
    assert fits["USD"]["status"] == "insufficient_data" and fits["USD"]["bgnbd"] is None

    scores = client.get("/v1/customers/EUR-c1/scores", headers=READER).json()
    predicted = scores["predictions"]
    assert predicted["status"] == "ok" and predicted["fit_id"] == fits["EUR"]["fit_id"]
    assert 0 < predicted["p_alive"] <= 1
    assert predicted["horizon_months"] == 12 and predicted["monthly_discount_rate"] == 0.01
    assert Decimal(predicted["predicted_clv"]) >= 0
    assert predicted == client.get("/v1/customers/EUR-c1/predictions", headers=READER).json()

    # below the minimum: the API says so and gives no number
    usd = client.get("/v1/customers/USD-c1/predictions", headers=READER).json()
    assert usd["status"] == "insufficient_data"
    assert "minimum" in usd["reason"]
    assert usd["p_alive"] is None and usd["predicted_clv"] is None

    page = client.get("/v1/scores", params={"limit": 500}, headers=READER).json()
    statuses = {item["customer_id"]: item["predictions"]["status"] for item in page["items"]}
    assert {s for c, s in statuses.items() if c.startswith("EUR")} == {"ok"}

    past = (NOW - timedelta(days=30)).isoformat()
    then = client.get(
        "/v1/customers/EUR-c1/predictions", params={"as_of": past}, headers=READER
    ).json()
    # the only fit observed later than that: none is used, no numbers
    assert then["status"] == "not_fitted" and then["p_alive"] is None
    assert "fit run by" in then["reason"]
    # a plain date is the end of that day in the policy timezone, as on every as_of
    day = (NOW - timedelta(days=30)).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    on_day = client.get("/v1/customers/EUR-c1/predictions", params={"as_of": day}, headers=READER)
    assert on_day.status_code == 200, on_day.text
    assert on_day.json()["status"] == then["status"]
    bad = client.get("/v1/customers/EUR-c1/predictions", params={"as_of": "x"}, headers=READER)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "as_of"

    # the business gauges: EUR's figures, USD only "no fit publishing numbers"
    metrics = client.get("/metrics").text
    assert 'crm_segment_clv_fit_ok{currency="EUR"} 1.0' in metrics
    assert 'crm_segment_clv_fit_ok{currency="USD"} 0.0' in metrics
    assert 'crm_segment_clv_customers_predicted{currency="EUR"} 300.0' in metrics
    assert 'crm_segment_predicted_clv_total{currency="USD"}' not in metrics
    total = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('crm_segment_predicted_clv_total{currency="EUR"}')
    )
    page_total = sum(
        Decimal(i["predictions"]["predicted_clv"])
        for i in page["items"]
        if i["predictions"]["status"] == "ok"
    )
    assert total == pytest.approx(float(page_total), abs=0.01 * 300)

    history = client.get("/v1/clv/fits", params={"currency": "EUR"}, headers=READER).json()
    assert [f["fit_id"] for f in history["items"]] == [fits["EUR"]["fit_id"]]
    assert history["next_cursor"] is None
    one = client.get(f"/v1/clv/fits/{fits['EUR']['fit_id']}", headers=READER).json()
    assert one == fits["EUR"]
    missing = client.get("/v1/clv/fits/999999", headers=READER)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_fit_history_is_a_cursor_page_newest_first(client: TestClient) -> None:
    runs = [client.post("/v1/clv/fits", headers=HEADERS).json() for _ in range(2)]
    made = sorted((f["fit_id"] for run in runs for f in run["fits"]), reverse=True)
    assert len(made) == 4  # EUR and USD, twice

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/clv/fits", params=params, headers=READER)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [f["fit_id"] for f in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (made, 2)

    forged = client.get("/v1/clv/fits", params={"cursor": "eyJiZWZvcmUiOjF9.x"}, headers=READER)
    assert forged.status_code == 400
    assert forged.json()["type"].endswith("invalid-cursor")


def test_clv_report(client: TestClient) -> None:
    client.post("/v1/clv/fits", headers=HEADERS)
    holdout_from = (NOW - timedelta(days=60)).isoformat()
    report = client.get(
        "/v1/reports/clv",
        params={"holdout_from": holdout_from, "currency": "EUR"},
        headers=READER,
    )
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["currency"] == "EUR" and body["fit"]["status"] == "ok"
    holdout = body["holdout"]
    assert holdout["holdout_days"] == 60 and holdout["status"] == "ok"
    assert holdout["calibration_fit"]["converged"]
    assert sum(b["customers"] for b in holdout["buckets"]) == holdout["customers"]
    assert holdout["actual_total"] > 0 and holdout["predicted_total"] > 0
    distribution = body["clv_distribution"]
    assert distribution["customers"] == 300 and len(distribution["deciles"]) == 10
    # the default currency is the one with most buyers
    assert client.get("/v1/reports/clv", headers=READER).json()["currency"] == "EUR"
    # a currency below the minimum: the fit says why, no distribution
    usd = client.get("/v1/reports/clv", params={"currency": "USD"}, headers=READER).json()
    assert usd["fit"]["status"] == "insufficient_data" and usd["clv_distribution"] is None
    assert usd["holdout"]["status"] == "insufficient_data" and usd["holdout"]["buckets"] == []

    backwards = client.get(
        "/v1/reports/clv",
        params={"holdout_from": NOW.isoformat(), "holdout_to": holdout_from},
        headers=READER,
    )
    assert backwards.status_code == 422
    assert backwards.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in backwards.json()["errors"]] == ["holdout_from"]
    # a holdout period beyond the data is refused, not reported as "ok, actual 0"
    future = client.get(
        "/v1/reports/clv",
        params={"holdout_to": (NOW + timedelta(days=30)).isoformat()},
        headers=READER,
    )
    assert future.status_code == 422, future.text
    assert future.json()["errors"][0]["field"] == "holdout_to"
    assert future.json()["errors"][0]["code"] == "in_future"
    # the forms as_of takes: a plain date (end of that day), an unencoded '+'
    day = (NOW - timedelta(days=60)).date().isoformat()
    plain = client.get(
        "/v1/reports/clv", params={"holdout_from": day, "currency": "EUR"}, headers=READER
    )
    assert plain.status_code == 200, plain.text
    assert plain.json()["holdout"]["status"] == "ok"
    moment = (NOW - timedelta(days=60)).astimezone(timezone(timedelta(hours=8)))
    raw = client.get(
        f"/v1/reports/clv?currency=EUR&holdout_from={moment.isoformat()}", headers=READER
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["holdout"]["holdout_days"] == 60
    unzoned = client.get(
        "/v1/reports/clv", params={"holdout_from": "2026-01-01T00:00:00"}, headers=READER
    )
    assert unzoned.status_code == 422
    assert unzoned.json()["errors"][0]["field"] == "holdout_from"
    bad = client.get("/v1/reports/clv", params={"currency": "eur"}, headers=READER)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.currency"


def test_the_endpoints_are_in_the_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/clv/fits",
        "/v1/clv/fits/{fit_id}",
        "/v1/customers/{customer_id}/predictions",
        "/v1/reports/clv",
    ):
        assert path in paths
    # the generic report route still answers the others
    assert client.get("/v1/reports/rfm", headers=READER).status_code == 200
