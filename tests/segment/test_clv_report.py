"""The CLV report's calibration / holdout check equals lifetimes' on the CDNOW transactions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from lifetimes.utils import summary_data_from_transaction_data

from services.segment.clv_report import clv_distribution, holdout_check
from services.segment.predictive import ClvOptions

DATASETS = Path(lifetimes.__file__).parent / "datasets"


def cdnow_transactions() -> pd.DataFrame:
    raw = pd.read_csv(
        DATASETS / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["customer", "id", "date", "units", "amount"],
        dtype={"date": str},
    )
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    return raw


def test_holdout_buckets_match_lifetimes_calibration_and_holdout() -> None:
    raw = cdnow_transactions()
    at = raw["date"].dt.tz_localize("UTC") + pd.Timedelta(hours=12)
    purchases = pd.DataFrame(
        {
            "customer_id": raw["id"].astype(str),
            "order_id": [f"o{i}" for i in range(len(raw))],
            "purchased_at": at,
            "created_at": at,
            "net_e4": (raw["amount"] * 10_000).round().astype("int64"),
            "currency": "USD",
        }
    )
    start = datetime(1997, 9, 30, 23, tzinfo=UTC)
    end = datetime(1998, 6, 30, 23, tzinfo=UTC)
    body = holdout_check(purchases, "USD", start, end, "UTC", ClvOptions())
    assert body["status"] == "ok"

    # lifetimes' calibration_and_holdout_data fails under pandas 3; its definition:
    # the calibration summary, and the distinct purchase days in the holdout period
    theirs = summary_data_from_transaction_data(
        raw, "id", "date", observation_period_end="1997-09-30", freq="D"
    ).rename(columns={"frequency": "frequency_cal", "recency": "recency_cal", "T": "T_cal"})
    holdout = raw[(raw["date"] > "1997-09-30") & (raw["date"] <= "1998-06-30")]
    theirs["frequency_holdout"] = (
        holdout.drop_duplicates(["id", "date"]).groupby("id").size().reindex(theirs.index).fillna(0)
    )
    theirs["duration_holdout"] = (pd.Timestamp("1998-06-30") - pd.Timestamp("1997-09-30")).days
    model = BetaGeoFitter().fit(theirs["frequency_cal"], theirs["recency_cal"], theirs["T_cal"])
    theirs["predicted"] = model.conditional_expected_number_of_purchases_up_to_time(
        theirs["duration_holdout"], theirs["frequency_cal"], theirs["recency_cal"], theirs["T_cal"]
    )
    theirs["bucket"] = np.minimum(theirs["frequency_cal"], 7)
    grouped = theirs.groupby("bucket").agg(
        customers=("frequency_holdout", "size"),
        actual=("frequency_holdout", "mean"),
        predicted=("predicted", "mean"),
    )
    assert [row["frequency"] for row in body["buckets"]] == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7+",
    ]
    for row, (_, expected) in zip(body["buckets"], grouped.iterrows(), strict=True):
        assert row["customers"] == expected["customers"]
        assert row["actual_purchases"] == pytest.approx(expected["actual"], rel=1e-12)
        # different optimisers, same maximum: the predictions agree closely
        assert row["predicted_purchases"] == pytest.approx(expected["predicted"], rel=5e-3)
    assert body["actual_total"] == theirs["frequency_holdout"].sum()


def test_holdout_check_says_why_when_the_calibration_is_too_small() -> None:
    at = pd.Timestamp("2026-01-10T12:00:00Z")
    purchases = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "order_id": ["1", "2"],
            "purchased_at": [at, at],
            "created_at": [at, at],
            "net_e4": [10_000, 20_000],
            "currency": ["EUR", "EUR"],
        }
    )
    body = holdout_check(
        purchases,
        "EUR",
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
        "UTC",
        ClvOptions(),
    )
    assert body["status"] == "insufficient_data"
    assert "2 customers (minimum 100)" in body["reason"]
    assert body["buckets"] == [] and body["calibration_fit"] is None


def test_clv_distribution_quantiles_and_deciles() -> None:
    predictions = pd.DataFrame(
        {"predicted_clv_e4": np.arange(1, 101) * 10_000, "p_alive": np.full(100, 0.5)}
    )
    body = clv_distribution(predictions, "EUR")
    assert body["customers"] == 100
    assert body["total"] == "5050.00" and body["mean"] == "50.50"
    assert body["quantiles"]["p50"] == "50.50"
    assert [d["total"] for d in body["deciles"]][:2] == ["955.00", "855.00"]
    assert sum(d["share"] for d in body["deciles"]) == pytest.approx(1.0)
    assert body["p_alive_mean"] == 0.5
