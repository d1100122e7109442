"""The custom-segment rule language: JSON in, a boolean mask over a scores frame out (pure).

A rule is one of::

    {"all": [rule, ...]}          every sub-rule holds
    {"any": [rule, ...]}          at least one holds
    {"not": rule}                 the sub-rule does not hold
    {"field": F, "op": OP, "value": V}

Comparison ops: ``eq ne gt gte lt lte`` (one value), ``between`` ([low, high], both
inclusive), ``in`` / ``not_in`` (a list). On the list fields (``channels``,
``categories``): ``contains`` (one value), ``contains_any`` / ``contains_all`` (a list).
Money fields take decimal strings; date fields take ISO 8601 timestamps. A customer
missing a value (a prospect has no scores) never satisfies a comparison on it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.segment.scoring import to_e4

NUMBER_FIELDS = {
    "r_score": "r_score",
    "f_score": "f_score",
    "m_score": "m_score",
    "recency_days": "recency_days",
    "frequency": "frequency",
    "order_count": "order_count",
}
MONEY_FIELDS = {
    "monetary": "monetary_e4",
    "total_spent": "total_spent_e4",
    "average_order_value": "average_order_value_e4",
}
DATE_FIELDS = {"first_order_at": "first_order_at", "last_order_at": "last_order_at"}
TEXT_FIELDS = {
    name: name
    for name in (
        "rfm_code",
        "rfm_segment",
        "lifecycle_stage",
        "purchase_bucket",
        "funnel_bucket",
        "value_quadrant",
        "currency",
        "province",
        "city",
    )
}
LIST_FIELDS = {"channels": "channels", "categories": "categories"}
FIELDS = sorted({**NUMBER_FIELDS, **MONEY_FIELDS, **DATE_FIELDS, **TEXT_FIELDS, **LIST_FIELDS})

SCALAR_OPS = {"eq", "ne", "gt", "gte", "lt", "lte"}
LIST_OPS = {"contains", "contains_any", "contains_all"}
Op = Literal[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "in",
    "not_in",
    "contains",
    "contains_any",
    "contains_all",
]


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Condition(_Rule):
    field: str = Field(description=f"one of: {', '.join(FIELDS)}")
    op: Op
    value: Any

    @model_validator(mode="after")
    def _check(self) -> Condition:
        if self.field not in FIELDS:
            raise ValueError(f"unknown field {self.field!r}; known: {', '.join(FIELDS)}")
        is_list_field = self.field in LIST_FIELDS
        if is_list_field and self.op not in LIST_OPS:
            raise ValueError(f"{self.field} takes contains, contains_any or contains_all")
        if not is_list_field and self.op in LIST_OPS:
            raise ValueError(f"{self.op} applies to channels or categories only")
        if self.op == "between" and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError("between takes [low, high]")
        if self.op in ("in", "not_in", "contains_any", "contains_all") and not isinstance(
            self.value, list
        ):
            raise ValueError(f"{self.op} takes a list")
        # parse once now so a bad literal is a 422 at definition time
        for item in self.value if isinstance(self.value, list) else [self.value]:
            _literal(self.field, item)
        return self


class AllOf(_Rule):
    all: list[Rule] = Field(min_length=1)


class AnyOf(_Rule):
    any: list[Rule] = Field(min_length=1)


class NotRule(_Rule):
    not_: Rule = Field(alias="not")
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


Rule = Union[AllOf, AnyOf, NotRule, Condition]  # noqa: UP007 - recursive alias needs Union

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotRule.model_rebuild()


def _literal(field: str, value: Any) -> Any:
    if field in MONEY_FIELDS:
        try:
            return to_e4(Decimal(str(value)))
        except (InvalidOperation, ValueError) as exc:
            raise ValueError(f"{field} takes decimal amounts, not {value!r}") from exc
    if field in DATE_FIELDS:
        try:
            return pd.Timestamp(datetime.fromisoformat(str(value))).tz_convert("UTC")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{field} takes ISO 8601 timestamps with an offset") from exc
    if field in NUMBER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{field} takes numbers, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{field} takes strings, not {value!r}")
    return value


def evaluate(rule: Rule, frame: pd.DataFrame) -> np.ndarray:
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


def _column(field: str, frame: pd.DataFrame) -> pd.Series:
    if field == "average_order_value":
        counts = frame["order_count"].astype("int64")
        total = frame["total_spent_e4"].astype("int64")
        return (total // counts.where(counts > 0, 1)).where(counts > 0)
    name = {**NUMBER_FIELDS, **MONEY_FIELDS, **DATE_FIELDS, **TEXT_FIELDS, **LIST_FIELDS}[field]
    column = frame[name]
    if field in DATE_FIELDS:
        return pd.to_datetime(column, utc=True)
    if field in NUMBER_FIELDS or field in MONEY_FIELDS:
        return column.astype("Float64")
    return column


def _condition(cond: Condition, frame: pd.DataFrame) -> np.ndarray:
    column = _column(cond.field, frame)
    op, raw = cond.op, cond.value
    if cond.field in LIST_FIELDS:
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
