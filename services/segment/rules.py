"""Custom-segment rules: the shared rule language (:mod:`shared.rules`) over the scores
frame, evaluated vectorised (a boolean mask over every customer at once; pure).

Fields are the scores frame's: numbers, money (decimal strings, compared in 1/10,000
units), dates (ISO 8601 with an offset), text, and the lists ``channels`` and
``categories``. A customer missing a value (a prospect has no scores) never satisfies a
comparison on it.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd

from shared import rules
from shared.rules import AllOf, AnyOf, Condition, NotRule

__all__ = [
    "CATALOGUE",
    "FIELDS",
    "PREDICTION_FIELDS",
    "AllOf",
    "AnyOf",
    "Condition",
    "NotRule",
    "Rule",
    "evaluate",
    "fields_of",
]

#: the predictive CLV fields (stored by the last fit run, services/segment/predictive.py)
PREDICTION_FIELDS = frozenset(
    {
        "p_alive",
        "expected_purchases_30d",
        "expected_purchases_90d",
        "expected_purchases_365d",
        "predicted_clv_percentile",
        "expected_order_value",
        "predicted_clv",
    }
)

CATALOGUE = rules.Catalogue(
    numbers=(
        "r_score",
        "f_score",
        "m_score",
        "recency_days",
        "frequency",
        "order_count",
        "p_alive",
        "expected_purchases_30d",
        "expected_purchases_90d",
        "expected_purchases_365d",
        "predicted_clv_percentile",
    ),
    money=(
        "monetary",
        "total_spent",
        "average_order_value",
        "expected_order_value",
        "predicted_clv",
    ),
    dates=("first_order_at", "last_order_at"),
    text=(
        "rfm_code",
        "rfm_segment",
        "lifecycle_stage",
        "purchase_bucket",
        "funnel_bucket",
        "value_quadrant",
        "currency",
        "province",
        "city",
    ),
    lists=("channels", "categories"),
    # average_order_value has no column: it is computed from the two below
    keys={
        "monetary": "monetary_e4",
        "total_spent": "total_spent_e4",
        "expected_order_value": "expected_order_value_e4",
        "predicted_clv": "predicted_clv_e4",
    },
    money_e4=True,
)
FIELDS = CATALOGUE.names

Rule = Annotated[rules.Rule, CATALOGUE]


def evaluate(rule: rules.Rule, frame: pd.DataFrame) -> np.ndarray:
    """A boolean mask: which rows of a scores frame satisfy ``rule``."""
    if isinstance(rule, AllOf):
        mask = np.ones(len(frame), dtype=bool)
        for sub in rule.all:
            mask &= evaluate(sub, frame)
        return mask
    if isinstance(rule, AnyOf):
        mask = np.zeros(len(frame), dtype=bool)
        for sub in rule.any:
            mask |= evaluate(sub, frame)
        return mask
    if isinstance(rule, NotRule):
        return ~evaluate(rule.not_, frame)
    return _condition(rule, frame)


def fields_of(rule: rules.Rule) -> set[str]:
    """Every field a rule reads."""
    if isinstance(rule, AllOf):
        return set().union(*(fields_of(sub) for sub in rule.all))
    if isinstance(rule, AnyOf):
        return set().union(*(fields_of(sub) for sub in rule.any))
    if isinstance(rule, NotRule):
        return fields_of(rule.not_)
    return {rule.field}


def _literal(field: str, value: Any) -> Any:
    literal = CATALOGUE.literal(field, value)
    if CATALOGUE.kinds[field] == "date":
        return pd.Timestamp(literal).tz_convert("UTC")
    return literal


def _column(field: str, frame: pd.DataFrame) -> pd.Series:
    if field == "average_order_value":
        counts = frame["order_count"].astype("int64")
        total = frame["total_spent_e4"].astype("int64")
        return (total // counts.where(counts > 0, 1)).where(counts > 0)
    key = CATALOGUE.key(field)
    if key not in frame and field in PREDICTION_FIELDS:
        # no stored predictions joined (none needed by the caller): missing for everyone
        return pd.Series([None] * len(frame), index=frame.index, dtype="Float64")
    column = frame[key]
    kind = CATALOGUE.kinds[field]
    if kind == "date":
        return pd.to_datetime(column, utc=True)
    if kind in ("number", "money"):
        return column.astype("Float64")
    return column


def _condition(cond: Condition, frame: pd.DataFrame) -> np.ndarray:
    column = _column(cond.field, frame)
    op, raw = cond.op, cond.value
    if CATALOGUE.kinds[cond.field] == "list":
        wanted = set(raw) if isinstance(raw, list) else {raw}
        if op == "contains_all":
            test = wanted.issubset
        else:

            def test(values: Any) -> bool:
                return bool(wanted.intersection(values))

        return np.fromiter((test(set(v or ())) for v in column), dtype=bool, count=len(column))
    present = column.notna().to_numpy(dtype=bool)
    if op in ("in", "not_in"):
        values = [_literal(cond.field, v) for v in raw]
        hit = column.isin(values).fillna(False).to_numpy(dtype=bool)
        return present & (hit if op == "in" else ~hit)
    if op == "between":
        low, high = (_literal(cond.field, v) for v in raw)
        result = (column >= low) & (column <= high)
    else:
        value = _literal(cond.field, raw)
        result = {
            "eq": lambda: column == value,
            "ne": lambda: column != value,
            "gt": lambda: column > value,
            "gte": lambda: column >= value,
            "lt": lambda: column < value,
            "lte": lambda: column <= value,
        }[op]()
    return present & pd.Series(result).fillna(False).to_numpy(dtype=bool)
