"""Calendar days in a timezone as day numbers since 1970-01-01: what recency, the lifecycle
stage and the day sweep count in (a policy's timezone)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from services.segment.policy import ScoringPolicy

_EPOCH = pd.Timestamp("1970-01-01")
_DAY = pd.Timedelta(days=1)


def local_day_numbers(values: pd.Series, timezone: str) -> np.ndarray:
    """Days since 1970-01-01 of each timestamp's calendar date in ``timezone`` (NaN if missing)."""
    stamps = pd.to_datetime(values, utc=True)
    local = stamps.dt.tz_convert(timezone).dt.tz_localize(None).dt.floor("D")
    days = (local - _EPOCH) / _DAY
    return np.asarray(days, dtype="float64")


def local_day_number(moment: datetime, timezone: str) -> int:
    """Days since 1970-01-01 of ``moment``'s calendar date in ``timezone`` (an aware time).

    Plain ``datetime`` arithmetic: through pandas it took ~0.1 ms, and every scores read
    asks for today's number (``sweep.read_time``)."""
    if moment.tzinfo is None:
        raise TypeError("a naive datetime has no calendar date in a timezone")
    return moment.astimezone(ZoneInfo(timezone)).toordinal() - _UNIX_ORDINAL


_UNIX_ORDINAL = date(1970, 1, 1).toordinal()


def recency_days(aggregates: pd.DataFrame, as_of: datetime, policy: ScoringPolicy) -> np.ndarray:
    """Calendar days (in the policy's timezone) from the last valid purchase to ``as_of``."""
    today = local_day_number(as_of, policy.timezone)
    days = today - local_day_numbers(aggregates["last_order_at"], policy.timezone)
    return np.maximum(days, 0)  # NaN (no purchase) stays NaN
