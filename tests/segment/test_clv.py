"""CLV summaries agree with lifetimes' summary_data_from_transaction_data on a real data set."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from lifetimes.datasets import load_transaction_data
from lifetimes.utils import summary_data_from_transaction_data

from services.segment.clv import clv_summary, exact_monetary_value

SHANGHAI = ZoneInfo("Asia/Shanghai")


def transactions() -> pd.DataFrame:
    """lifetimes' shipped transaction log (15,273 purchases), with amounts added.

    It has no amounts, so each purchase gets a deterministic one (several per day for
    some customers, so daily sums are exercised).
    """
    frame = load_transaction_data()
    frame["date"] = pd.to_datetime(frame["date"])
    rng = np.random.default_rng(42)
    frame["amount_e4"] = rng.integers(100, 5_000_000, len(frame))
    frame["amount"] = frame["amount_e4"] / 10_000
    return frame


@pytest.mark.parametrize("end", ["2014-12-31", "2014-06-30"])
def test_summary_matches_lifetimes(end: str) -> None:
    frame = transactions()
    expected = summary_data_from_transaction_data(
        frame, "id", "date", monetary_value_col="amount", observation_period_end=end, freq="D"
    )
    # our orders are instants in UTC; the days are the policy timezone's calendar days
    purchases = pd.DataFrame(
        {
            "customer_id": frame["id"],
            "purchased_at": frame["date"].dt.tz_localize(SHANGHAI).dt.tz_convert("UTC")
            + pd.Timedelta(hours=23, minutes=30),
            "net_e4": frame["amount_e4"],
        }
    )
    as_of = datetime.fromisoformat(end).replace(hour=23, minute=59, tzinfo=SHANGHAI)
    actual = clv_summary(purchases, as_of, "Asia/Shanghai")
    assert len(actual) == len(expected) > 1000
    actual = actual.loc[expected.index]
    for column in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(actual[column].to_numpy(), expected[column].to_numpy())
    np.testing.assert_allclose(
        actual["monetary_value"].to_numpy(), expected["monetary_value"].to_numpy(), rtol=1e-12
    )
    # the exact Decimal form rounds the same mean
    sample = actual[actual["frequency"] > 0].iloc[0]
    exact = exact_monetary_value(int(sample["repeat_total_e4"]), int(sample["frequency"]))
    assert abs(float(exact) - sample["monetary_value"]) < 1e-4
