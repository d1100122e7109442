"""CLV-ready summaries with exactly the definitions of lifetimes'
``summary_data_from_transaction_data(..., freq="D")`` (pure, vectorised with numpy).

Per customer, over valid purchases on or before the observation day, with purchases
grouped into calendar days in the policy's timezone (amounts of one day summed):

- ``frequency``: the number of days with a purchase, less one (repeat purchase days);
- ``recency``: days from the first purchase day to the last;
- ``T``: days from the first purchase day to the observation day;
- ``monetary_value``: the mean of the daily sums of the repeat days (the first day
  excluded), 0 when there is none.

No per-row Python and a single sort (of integer keys, to count distinct days); sums,
minima and maxima are unbuffered ``ufunc.at`` scatters over integer customer codes.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pandas as pd

from services.segment.local_days import local_day_number, local_day_numbers

SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value", "repeat_total_e4"]


def clv_summary(purchases: pd.DataFrame, as_of: datetime, timezone: str) -> pd.DataFrame:
    """``purchases``: customer_id, purchased_at (UTC), net_e4. Indexed by customer_id (sorted).

    ``monetary_value`` is a float (what the models take); ``repeat_total_e4`` the exact
    integer sum of the repeat days, so an API can give the mean as a Decimal.
    """
    observation_day = local_day_number(as_of, timezone)
    days = local_day_numbers(purchases["purchased_at"], timezone)
    keep = days <= observation_day
    if not keep.any():
        return pd.DataFrame(
            {c: pd.Series([], dtype="float64") for c in SUMMARY_COLUMNS},
            index=pd.Index([], name="customer_id"),
        )
    codes, uniques = pd.factorize(purchases["customer_id"].to_numpy()[keep], sort=True)
    days = days[keep].astype("int64")
    amounts = purchases["net_e4"].to_numpy(dtype="int64")[keep]
    n = len(uniques)

    first_day = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_day, codes, days)
    last_day = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last_day, codes, days)
    total = np.zeros(n, dtype="int64")
    np.add.at(total, codes, amounts)
    on_first_day = days == first_day[codes]
    first_total = np.zeros(n, dtype="int64")
    np.add.at(first_total, codes[on_first_day], amounts[on_first_day])

    # distinct (customer, day) pairs: sort the integer pair keys, count the boundaries
    low = int(days.min())
    span = int(days.max()) - low + 1
    pairs = np.sort(codes.astype("int64") * span + (days - low))
    distinct = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]
    purchase_days = np.bincount(distinct // span, minlength=n)

    frequency = purchase_days - 1
    repeat_total = total - first_total
    monetary = np.divide(repeat_total / 10_000.0, frequency, out=np.zeros(n), where=frequency > 0)
    return pd.DataFrame(
        {
            "frequency": frequency.astype("float64"),
            "recency": (last_day - first_day).astype("float64"),
            "T": (observation_day - first_day).astype("float64"),
            "monetary_value": monetary,
            "repeat_total_e4": repeat_total,
        },
        index=pd.Index(uniques, name="customer_id"),
    )


def exact_monetary_value(repeat_total_e4: int, frequency: int) -> Decimal:
    """The mean repeat-day value as a Decimal, to 1/10,000 (half even)."""
    if frequency <= 0:
        return Decimal("0")
    mean = Decimal(int(repeat_total_e4)) / Decimal(int(frequency)) / Decimal(10_000)
    return mean.quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
