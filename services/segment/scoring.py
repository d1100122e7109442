"""Pure scoring: DataFrames in, DataFrames out, no I/O.

The same functions serve both paths: the per-event path scores the handful of
customers a poll batch touched with the cut points of the last batch; the batch
path recomputes the cut points (``cut_points``) over every scored customer and scores
everyone.
Because a quintile score is defined as "how many cut points lie below the
value", applying the batch's cut points to one customer gives exactly the score
the batch gives it.

Money is kept as integers in 1/10,000 of the currency unit (``*_e4`` columns, ``money``),
so sums are exact and never pass through float. Whether a customer's published state
changed is ``published_state``; days in the policy's timezone are ``local_days``.

Orders frame (input of :func:`aggregate_orders`), one row per order (latest version):
    customer_id, order_id, valid (bool), purchased_at (UTC), created_at (UTC), net_e4 (int),
    currency, channel, categories (tuple of str), province, city

Aggregates frame (output of :func:`aggregate_orders`, input of :func:`score_aggregates`):
    customer_id, currency, order_count, total_spent_e4, first_order_at, last_order_at,
    frequency, monetary_e4, window_oldest_at, channels, categories, province, city
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from services.segment.cut_points import CutPoints, compute_cut_points
from services.segment.local_days import local_day_number, local_day_numbers, recency_days
from services.segment.policy import ScoringPolicy
from services.segment.rules import Rule, evaluate

AGGREGATE_COLUMNS = [
    "customer_id",
    "currency",
    "order_count",
    "total_spent_e4",
    "first_order_at",
    "last_order_at",
    "frequency",
    "monetary_e4",
    "window_oldest_at",
    "channels",
    "categories",
    "province",
    "city",
]

SCORE_COLUMNS = [
    "recency_days",
    "r_score",
    "f_score",
    "m_score",
    "rfm_code",
    "rfm_segment",
    "lifecycle_stage",
    "purchase_bucket",
    "funnel_bucket",
    "value_quadrant",
]


def _instants(values: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 microseconds since the epoch."""
    naive = pd.to_datetime(values, utc=True).dt.tz_localize(None)
    return naive.to_numpy().astype("datetime64[us]").astype("int64")


def aggregate_orders(
    orders: pd.DataFrame, as_of: datetime, policy: ScoringPolicy, cutoff: datetime | None = None
) -> pd.DataFrame:
    """Per-customer aggregates from the latest version of each order, as of ``as_of``.

    With ``cutoff`` (an as-of query: the same as ``as_of``), orders created and purchases
    made after it are ignored, so any past reference time is reproducible. Without it
    (the live path) every stored order counts, even one stamped a moment in the future.
    A customer with orders but no valid purchase has ``order_count`` 0 (a prospect).
    Frequency and monetary count valid purchases in the window ``(as_of - window, as_of]``;
    money sums only orders in the customer's currency (that of their latest purchase).

    Vectorised as integer scatters over customer codes (no Python-level groupby): the
    consumer calls it on every poll batch.
    """
    if orders.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in AGGREGATE_COLUMNS})
    frame = orders
    purchased = _instants(frame["purchased_at"])
    created = _instants(frame["created_at"])
    valid = frame["valid"].to_numpy(dtype=bool)
    if cutoff is not None:
        limit = int(pd.Timestamp(cutoff).value // 1000)
        exists = created <= limit
        frame, purchased, created = frame[exists], purchased[exists], created[exists]
        valid = valid[exists] & (purchased <= limit)
        if frame.empty:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in AGGREGATE_COLUMNS})
    codes, uniques = pd.factorize(frame["customer_id"].to_numpy(dtype=object), sort=True)
    n = len(uniques)
    order_ids = frame["order_id"].to_numpy(dtype=object)
    currencies = frame["currency"].to_numpy(dtype=object)
    net = frame["net_e4"].to_numpy(dtype="int64")

    # "latest" = greatest (purchased_at, order_id) within the customer
    rank = np.empty(len(frame), dtype="int64")
    rank[np.lexsort((order_ids, purchased))] = np.arange(len(frame))
    latest_valid = np.full(n, -1, dtype="int64")
    np.maximum.at(latest_valid, codes[valid], rank[valid])
    latest_any = np.full(n, -1, dtype="int64")
    np.maximum.at(latest_any, codes, rank)
    by_rank = np.empty(len(frame), dtype="int64")
    by_rank[rank] = np.arange(len(frame))
    currency = currencies[by_rank[np.where(latest_valid >= 0, latest_valid, latest_any)]]
    in_currency = currencies == currency[codes]

    window_start = int((pd.Timestamp(as_of) - timedelta(days=policy.window_days)).value // 1000)
    in_window = valid & (purchased > window_start)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes[mask], minlength=n).astype("int64")

    def total(mask: np.ndarray) -> np.ndarray:
        sums = np.zeros(n, dtype="int64")
        np.add.at(sums, codes[mask], net[mask])
        return sums

    def extreme(mask: np.ndarray, ufunc: np.ufunc, start: int) -> pd.Series:
        found = np.full(n, start, dtype="int64")
        ufunc.at(found, codes[mask], purchased[mask])
        stamps = pd.to_datetime(np.where(found == start, 0, found), unit="us", utc=True)
        return pd.Series(stamps, dtype="datetime64[us, UTC]").where(found != start)

    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    out = pd.DataFrame({"customer_id": pd.Series(uniques, dtype=object)})
    out["currency"] = pd.Series(currency, dtype=object)
    out["order_count"] = count(valid)
    out["total_spent_e4"] = total(valid & in_currency)
    out["first_order_at"] = extreme(valid, np.minimum, big)
    out["last_order_at"] = extreme(valid, np.maximum, small)
    out["frequency"] = count(in_window)
    out["monetary_e4"] = total(in_window & in_currency)
    out["window_oldest_at"] = extreme(in_window, np.minimum, big)

    # sets of strings and the latest known region: a plain loop over the few rows
    channels: list[set[str]] = [set() for _ in range(n)]
    categories: list[set[str]] = [set() for _ in range(n)]
    never = (float("-inf"), "")
    province_seen: list[tuple[float, str]] = [never] * n
    city_seen: list[tuple[float, str]] = [never] * n
    provinces: list[Any] = [None] * n
    cities: list[Any] = [None] * n
    for code, is_valid, channel, cats, made, order_id, province, city in zip(
        codes.tolist(),
        valid.tolist(),
        frame["channel"].tolist(),
        frame["categories"].tolist(),
        created.tolist(),
        order_ids.tolist(),
        frame["province"].tolist(),
        frame["city"].tolist(),
        strict=True,
    ):
        if is_valid:
            if isinstance(channel, str) and channel:
                channels[code].add(channel)
            if isinstance(cats, (list, tuple)):
                categories[code].update(c for c in cats if c)
        # the latest order (by creation) naming a province / city gives it
        if isinstance(province, str) and (made, order_id) > province_seen[code]:
            province_seen[code], provinces[code] = (made, order_id), province
        if isinstance(city, str) and (made, order_id) > city_seen[code]:
            city_seen[code], cities[code] = (made, order_id), city
    out["channels"] = pd.Series([tuple(sorted(c)) for c in channels], dtype=object)
    out["categories"] = pd.Series([tuple(sorted(c)) for c in categories], dtype=object)
    out["province"] = pd.Series(provinces, dtype=object)
    out["city"] = pd.Series(cities, dtype=object)
    return out[AGGREGATE_COLUMNS]


def _bucket_labels(bounds: list[int]) -> list[str]:
    labels = []
    for i, low in enumerate(bounds):
        if i == len(bounds) - 1:
            labels.append(f"{low}+")
        elif bounds[i + 1] - low == 1:
            labels.append(str(low))
        else:
            labels.append(f"{low}-{bounds[i + 1] - 1}")
    return labels


def bucket(counts: np.ndarray, bounds: list[int]) -> np.ndarray:
    """The bucket label of each count (``None`` for 0)."""
    labels = np.array([None, *_bucket_labels(bounds)], dtype=object)
    index = np.searchsorted(np.asarray(bounds), counts, side="right")
    return labels[index]


def _segment_lookup(policy: ScoringPolicy) -> np.ndarray:
    grid = np.empty((6, 6), dtype=object)
    for r in range(1, 6):
        for fm in range(1, 6):
            grid[r, fm] = next(
                c.segment
                for c in policy.segment_table
                if c.r[0] <= r <= c.r[1] and c.fm[0] <= fm <= c.fm[1]
            )
    return grid


_STAGES = np.array(["prospect", "new", "active", "silent", "sleeping", "lost"], dtype=object)
_QUADRANTS = np.array(["premium", "potential", "problem", "pending"], dtype=object)
_RFM_CODES = np.array([f"{i:03d}" for i in range(556)], dtype=object)


def score_arrays(
    counts: np.ndarray,
    frequency: np.ndarray,
    monetary: np.ndarray,
    recency: np.ndarray,
    first_days: np.ndarray,
    policy: ScoringPolicy,
    cut_points: CutPoints,
) -> dict[str, np.ndarray]:
    """Every score of many customers from plain arrays (the core both paths share).

    ``counts`` = lifetime valid purchases (int), ``frequency`` / ``monetary`` the window
    figures (float), ``recency`` = days since the last purchase (NaN without one),
    ``first_days`` = days since the first purchase (NaN without one). Returns the score
    columns (``recency_days`` as float, ``r_score`` ... as int, labels as objects) and
    ``scored`` (customers with a valid purchase; the others' scores are meaningless).
    """
    n = len(counts)
    scored = counts > 0
    r = 5 - np.searchsorted(np.asarray(cut_points.recency), np.nan_to_num(recency), side="left")
    f = 1 + np.searchsorted(np.asarray(cut_points.frequency), frequency, side="left")
    m = 1 + np.searchsorted(np.asarray(cut_points.monetary), monetary, side="left")
    fm = (f + m + 1) // 2
    segments = _segment_lookup(policy)[r, fm] if n else np.zeros(0, dtype=object)

    thresholds = policy.lifecycle
    # labels picked by integer index (no string arrays built per row)
    stage_index = np.select(
        [
            ~scored,
            (recency <= thresholds.active_days) & (first_days <= thresholds.active_days),
            recency <= thresholds.active_days,
            recency <= thresholds.silent_days,
            recency <= thresholds.sleeping_days,
        ],
        [0, 1, 2, 3, 4],
        default=5,
    )
    stage = _STAGES[stage_index]

    if cut_points.quadrant_frequency is None or cut_points.quadrant_monetary is None:
        high_f = high_m = np.zeros(n, dtype=bool)
    else:
        high_f = frequency > cut_points.quadrant_frequency
        high_m = monetary > cut_points.quadrant_monetary
    quadrant = _QUADRANTS[np.select([high_f & high_m, high_m, high_f], [0, 1, 2], default=3)]

    def masked(values: np.ndarray) -> np.ndarray:
        values = values.copy()
        values[~scored] = None
        return values

    codes = _RFM_CODES[r * 100 + f * 10 + m] if n else np.zeros(0, dtype=object)
    return {
        "scored": scored,
        "recency_days": np.nan_to_num(recency),
        "r_score": r,
        "f_score": f,
        "m_score": m,
        "rfm_code": masked(codes),
        "rfm_segment": masked(segments),
        "lifecycle_stage": stage,
        "purchase_bucket": bucket(counts, policy.purchase_buckets),
        "funnel_bucket": bucket(counts, policy.funnel_buckets),
        "value_quadrant": masked(quadrant),
    }


def score_aggregates(
    aggregates: pd.DataFrame, policy: ScoringPolicy, cut_points: CutPoints, as_of: datetime
) -> pd.DataFrame:
    """The aggregates with every score column added, as of ``as_of`` under ``cut_points``."""
    n = len(aggregates)
    counts = aggregates["order_count"].to_numpy(dtype="int64") if n else np.zeros(0, dtype="int64")
    recency = recency_days(aggregates, as_of, policy) if n else np.zeros(0)
    frequency = aggregates["frequency"].to_numpy(dtype="float64") if n else np.zeros(0)
    monetary = aggregates["monetary_e4"].to_numpy(dtype="float64") if n else np.zeros(0)
    first_days = (
        local_day_number(as_of, policy.timezone)
        - local_day_numbers(aggregates["first_order_at"], policy.timezone)
        if n
        else np.zeros(0)
    )
    columns = score_arrays(counts, frequency, monetary, recency, first_days, policy, cut_points)
    return with_scores(aggregates, columns)


_INT_SCORES = ("recency_days", "r_score", "f_score", "m_score")


def with_scores(aggregates: pd.DataFrame, columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The aggregates with the columns of :func:`score_arrays` added (what ``score_aggregates``
    returns): the per-event path, which scores on plain arrays, builds its frame for the
    custom-segment rules with it instead of scoring again."""
    out = aggregates.copy()
    scored = columns["scored"]
    for column in _INT_SCORES:
        values = np.where(scored, columns[column], 0).astype("int64")
        out[column] = pd.arrays.IntegerArray(values, ~scored)
    for column in SCORE_COLUMNS:
        if column not in _INT_SCORES:
            out[column] = pd.Series(columns[column], index=out.index, dtype=object)
    return out


def rescore(
    aggregates: pd.DataFrame, policy: ScoringPolicy, policy_version: int, as_of: datetime
) -> tuple[CutPoints, pd.DataFrame]:
    """The batch path: new cut points over everyone, then everyone's scores under them."""
    cut_points = compute_cut_points(aggregates, policy, policy_version, as_of)
    return cut_points, score_aggregates(aggregates, policy, cut_points, as_of)


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def column_values(series: pd.Series) -> list[Any]:
    """One column as plain-Python values, as :func:`plain_rows` gives them."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        present = series.notna().to_numpy()
        stamps = series.dt.to_pydatetime()
        return [s if p else None for s, p in zip(stamps, present, strict=True)]
    if pd.api.types.is_integer_dtype(series.dtype):
        plain: Any = getattr(series.dtype, "numpy_dtype", series.dtype)
        if not series.hasnans:
            return series.to_numpy(dtype=plain).tolist()
        # a nullable integer column (the scores): ints and None without a per-value _clean
        values = series.to_numpy(dtype=plain, na_value=0).tolist()
        missing = series.isna().to_numpy().tolist()
        return [None if m else v for v, m in zip(values, missing, strict=True)]
    # labels are mostly str: only other values go through _clean (1.2 s of a policy
    # change's write for 168,741 customers at 200,000, when every value did)
    return [v if v.__class__ is str else _clean(v) for v in series.astype(object).tolist()]


def plain_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain-Python dicts (None for missing, datetimes, ints, lists)."""
    columns = {name: column_values(frame[name]) for name in frame.columns}
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def memberships(scores: pd.DataFrame, segments: Sequence[tuple[str, Rule]]) -> list[list[str]]:
    """Each row's custom segment ids (sorted), by evaluating every rule on the frame."""
    if not segments:
        empty: list[str] = []
        return [empty] * len(scores)  # one shared list: never mutated
    result: list[list[str]] = [[] for _ in range(len(scores))]
    for segment_id, rule in sorted(segments, key=lambda s: s[0]):
        for index in np.flatnonzero(evaluate(rule, scores)):
            result[index].append(segment_id)
    return result
