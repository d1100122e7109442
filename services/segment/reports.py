"""Reports over a scores frame (pure): revenue is reported per currency, as decimal strings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from services.segment.money import from_e4
from services.segment.policy import LIFECYCLE_STAGES, VALUE_QUADRANTS, ScoringPolicy
from services.segment.scoring import _bucket_labels


def _revenue(frame: pd.DataFrame, column: str) -> dict[str, str]:
    sums = frame.groupby("currency")[column].sum()
    return {str(cur): str(from_e4(int(v), str(cur))) for cur, v in sums.items() if cur}


def _cells(frame: pd.DataFrame, keys: Sequence[str], revenue_column: str) -> list[dict[str, Any]]:
    cells = []
    for values, group in frame.groupby(list(keys), sort=True):
        values = values if isinstance(values, tuple) else (values,)
        cell: dict[str, Any] = {k: _plain(v) for k, v in zip(keys, values, strict=True)}
        cell["customers"] = len(group)
        cell["revenue"] = _revenue(group, revenue_column)
        cells.append(cell)
    return cells


def _plain(value: Any) -> Any:
    return int(value) if hasattr(value, "__int__") and not isinstance(value, str) else value


def rfm_grid(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """Customers and window revenue (M) per R x F cell."""
    scored = scores[scores["r_score"].notna()].astype({"r_score": "int64", "f_score": "int64"})
    return _cells(scored, ["r_score", "f_score"], "monetary_e4")


def rfm_segments(scores: pd.DataFrame) -> list[dict[str, Any]]:
    scored = scores[scores["rfm_segment"].notna()]
    return _cells(scored, ["rfm_segment"], "monetary_e4")


def lifecycle_distribution(scores: pd.DataFrame) -> list[dict[str, Any]]:
    counts = scores["lifecycle_stage"].value_counts()
    return [{"lifecycle_stage": s, "customers": int(counts.get(s, 0))} for s in LIFECYCLE_STAGES]


def lifecycle_transitions(before: pd.DataFrame, after: pd.DataFrame) -> list[dict[str, Any]]:
    """How many customers moved from each stage to each other stage ("none": unknown then)."""
    merged = pd.merge(
        before[["customer_id", "lifecycle_stage"]],
        after[["customer_id", "lifecycle_stage"]],
        on="customer_id",
        how="outer",
        suffixes=("_from", "_to"),
    ).fillna("none")
    counts = merged.groupby(["lifecycle_stage_from", "lifecycle_stage_to"]).size()
    return [
        {"from": str(key[0]), "to": str(key[1]), "customers": int(n)}  # type: ignore[index]
        for key, n in counts.items()
    ]


def funnel(scores: pd.DataFrame, policy: ScoringPolicy) -> list[dict[str, Any]]:
    """Customers, lifetime revenue, orders and average order value per funnel bucket."""
    rows = []
    buying = scores[scores["funnel_bucket"].notna()]
    for label in _bucket_labels(policy.funnel_buckets):
        group = buying[buying["funnel_bucket"] == label]
        orders = group.groupby("currency")["order_count"].sum()
        revenue = group.groupby("currency")["total_spent_e4"].sum()
        aov = {
            str(c): str(from_e4(int(revenue[c]) // int(orders[c]), str(c)))
            for c in revenue.index
            if int(orders.get(c, 0))
        }
        rows.append(
            {
                "bucket": label,
                "customers": len(group),
                "orders": int(group["order_count"].sum()),
                "revenue": _revenue(group, "total_spent_e4"),
                "average_order_value": aov,
            }
        )
    return rows


def quadrants(scores: pd.DataFrame) -> list[dict[str, Any]]:
    scored = scores[scores["value_quadrant"].notna()]
    rows = []
    for quadrant in VALUE_QUADRANTS:
        group = scored[scored["value_quadrant"] == quadrant]
        rows.append(
            {
                "value_quadrant": quadrant,
                "customers": len(group),
                "revenue": _revenue(group, "monetary_e4"),
            }
        )
    return rows


def regions(scores: pd.DataFrame, level: str) -> list[dict[str, Any]]:
    """Customers, lifetime revenue and lifecycle mix per province (or province and city)."""
    keys = ["province"] if level == "province" else ["province", "city"]
    frame = scores.copy()
    for key in keys:
        frame[key] = frame[key].fillna("unknown")
    rows = []
    for values, group in frame.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        row: dict[str, Any] = dict(zip(keys, values, strict=True))
        row["customers"] = len(group)
        row["revenue"] = _revenue(group, "total_spent_e4")
        row["lifecycle"] = {
            str(k): int(v) for k, v in group["lifecycle_stage"].value_counts().items()
        }
        rows.append(row)
    return rows
