"""A customer's published state (what a ``segment.changed`` carries) as a hash and figures,
and which customers' state differs from what was last published: both scoring paths find
their changes with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: A customer's published state is what a ``segment.changed`` carries but ``recency_days``
#: (it moves with the calendar alone): the scores and labels (these columns, hashed with
#: the custom-segment memberships by :func:`state_hashes`) and the figures below. Any
#: difference from the last published state is a change (:func:`state_changed`), in
#: both paths.
STATE_COLUMNS = [
    "rfm_code",
    "rfm_segment",
    "lifecycle_stage",
    "purchase_bucket",
    "funnel_bucket",
    "value_quadrant",
    "segments_key",
]
#: The published figures, compared as they are (each customer's stored aggregates hold them).
STATE_FIGURES = ["frequency", "monetary_e4", "currency", "first_order_at", "last_order_at"]


def state_hashes(
    scores: pd.DataFrame | Mapping[str, np.ndarray], memberships: list[list[str]]
) -> np.ndarray:
    """A stable 64-bit hash of each customer's scores, stage, buckets, quadrant and segments.

    Both paths store it, so the batch path finds who changed by comparing integers. Each
    column holds few distinct values: those are hashed once (pandas' fixed-key SipHash,
    stable across runs) and combined per row with integer arithmetic.
    """
    keys = [",".join(m) if m else "" for m in memberships]
    if len(keys) <= _FEW:
        return _few_state_hashes(scores, keys)
    combined = np.zeros(len(memberships), dtype="uint64")
    columns = [np.asarray(scores[c], dtype=object) for c in STATE_COLUMNS[:-1]]
    columns.append(np.asarray(keys, dtype=object))
    missing = np.uint64(_MISSING)
    with np.errstate(over="ignore"):
        for position, values in enumerate(columns):
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            hashed = np.append(pd.util.hash_array(np.asarray(uniques, dtype=object)), missing)
            combined = combined * np.uint64(1_000_003) + hashed[codes] + np.uint64(position)
    return combined.view("int64")


#: the hash of "no value" (pandas' code -1)
_MISSING = 0x9E3779B97F4A7C15
#: up to this many customers, :func:`state_hashes` combines remembered value hashes in
#: Python: pandas' factorize and hash per column cost ~0.1 ms each whatever the size, most
#: of a one-order batch's scoring (one order per request, the idle POST -> scores path)
_FEW = 32
#: each value's SipHash as pandas computes it (labels, codes, segment keys: a few hundred)
_VALUE_HASHES: dict[Any, int] = {}
_MASK = (1 << 64) - 1


def _value_hash(value: Any) -> int:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return _MISSING
    found = _VALUE_HASHES.get(value)
    if found is None:
        found = int(pd.util.hash_array(np.array([value], dtype=object))[0])
        if len(_VALUE_HASHES) < 100_000:
            _VALUE_HASHES[value] = found
    return found


def _few_state_hashes(
    scores: pd.DataFrame | Mapping[str, np.ndarray], keys: list[str]
) -> np.ndarray:
    """:func:`state_hashes` of a few customers: the same numbers, without pandas per column."""
    columns = [list(scores[c]) for c in STATE_COLUMNS[:-1]]
    columns.append(keys)
    hashes = []
    for row in range(len(keys)):
        combined = 0
        for position, values in enumerate(columns):
            combined = (combined * 1_000_003 + _value_hash(values[row]) + position) & _MASK
        hashes.append(combined)
    return np.array(hashes, dtype="uint64").view("int64")


Rows = Sequence[Mapping[str, Any] | None] | pd.DataFrame


def state_changed(
    previous: Rows, current: Rows, hashes: np.ndarray, figures_moved: np.ndarray | None = None
) -> np.ndarray:
    """Which customers' state differs from the last published one: each is a ``segment.changed``.

    ``previous``: each customer's ``state_hash`` and :data:`STATE_FIGURES` as last
    published (no row or no hash: never published, a change); ``current``: their figures
    now; ``hashes``: their new state hashes. Rows as dicts or as a DataFrame, aligned.
    ``figures_moved`` (a mask) limits the comparison of figures to the rows whose figures
    may differ, when the caller knows the others' are the very same values.
    """
    if isinstance(previous, pd.DataFrame):
        stored = previous["state_hash"]
        known = stored.notna().to_numpy()
        before = stored.fillna(0).to_numpy(dtype="int64")
    else:
        stored_list = [row.get("state_hash") if row is not None else None for row in previous]
        known = np.array([h is not None for h in stored_list], dtype=bool)
        before = np.array([h or 0 for h in stored_list], dtype="int64")
    changed = ~known | (before != hashes)
    unsettled = ~changed if figures_moved is None else ~changed & figures_moved
    for name in STATE_FIGURES:
        # only where nothing differs yet (on the consumer's path most differ in the hash)
        rows = np.flatnonzero(unsettled)
        if not len(rows):
            break
        differ = _differ(_pick(previous, name, rows), _pick(current, name, rows))
        changed[rows] = differ
        unsettled[rows] = ~differ
    return changed


def _differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element by element: the values differ (two missing values do not)."""
    differ = np.asarray(a != b, dtype=bool)
    if differ.any() and (a.dtype.kind in "OMf" or b.dtype.kind in "OMf"):
        differ &= ~(pd.isna(a) & pd.isna(b))
    return differ


def _pick(table: Rows, name: str, rows: np.ndarray) -> np.ndarray:
    """One column of these rows as a plain array (datetimes as datetime64, missing as None/NaT)."""
    if not isinstance(table, pd.DataFrame):
        picked = [table[i] for i in rows.tolist()]
        return np.array([r[name] if r is not None else None for r in picked], dtype=object)
    column = table[name].iloc[rows]
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        # UTC instants as datetime64, not one Timestamp object per row
        return column.dt.tz_convert(None).to_numpy()
    if isinstance(column.dtype, np.dtype):
        return column.to_numpy()
    plain = column.to_numpy(dtype=object)
    plain[pd.isna(plain)] = None  # a nullable dtype's pd.NA would not compare to a bool
    return plain
