"""The inline audience rule language: JSON in, a predicate over one audience row out (pure).

Same shape as segment's custom-segment rules::

    {"all": [rule, ...]}          every sub-rule holds
    {"any": [rule, ...]}          at least one holds
    {"not": rule}                 the sub-rule does not hold
    {"field": F, "op": OP, "value": V}

Scalar ops: ``eq ne gt gte lt lte`` (one value), ``between`` ([low, high], inclusive),
``in`` / ``not_in`` (a list). List fields (``tags``, ``segments``): ``contains`` (one
value), ``contains_any`` / ``contains_all`` (a list). ``monetary`` takes a decimal
string. A customer missing a value never satisfies a comparison on it (``ne`` and
``not_in`` included), so ``{"not": ...}`` is the way to say "not known to be".
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

NUMBER_FIELDS = frozenset({"r_score", "f_score", "m_score", "recency_days", "frequency"})
MONEY_FIELDS = {"monetary": "monetary_e4"}
TEXT_FIELDS = frozenset(
    {"rfm_segment", "lifecycle_stage", "value_quadrant", "province", "city", "currency"}
)
LIST_FIELDS = frozenset({"tags", "segments"})
FIELDS = sorted(NUMBER_FIELDS | set(MONEY_FIELDS) | TEXT_FIELDS | LIST_FIELDS)

LIST_OPS = {"contains", "contains_any", "contains_all"}
Op = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in",
    "contains", "contains_any", "contains_all",
]  # fmt: skip

Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]


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
        if self.field in LIST_FIELDS and self.op not in LIST_OPS:
            raise ValueError(f"{self.field} takes contains, contains_any or contains_all")
        if self.field not in LIST_FIELDS and self.op in LIST_OPS:
            raise ValueError(f"{self.op} applies to tags or segments only")
        if self.op == "between" and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError("between takes [low, high]")
        if self.op in ("in", "not_in", "contains_any", "contains_all") and not isinstance(
            self.value, list
        ):
            raise ValueError(f"{self.op} takes a list")
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


def to_e4(amount: Decimal | int | str) -> int:
    """A money amount as integer 1/10,000 units."""
    return int(Decimal(amount).scaleb(4).to_integral_value())


def _literal(field: str, value: Any) -> Any:
    if field in MONEY_FIELDS:
        try:
            return to_e4(Decimal(str(value)))
        except (InvalidOperation, ValueError) as exc:
            raise ValueError(f"{field} takes decimal amounts, not {value!r}") from exc
    if field in NUMBER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{field} takes numbers, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{field} takes strings, not {value!r}")
    return value


_SCALAR = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def compile_rule(rule: Rule) -> Predicate:
    """A fast predicate over an audience row (a mapping with the projection's columns)."""
    if isinstance(rule, AllOf):
        subs = [compile_rule(r) for r in rule.all]
        return lambda row: all(s(row) for s in subs)
    if isinstance(rule, AnyOf):
        subs = [compile_rule(r) for r in rule.any]
        return lambda row: any(s(row) for s in subs)
    if isinstance(rule, NotRule):
        sub = compile_rule(rule.not_)
        return lambda row: not sub(row)
    return _compile_condition(rule)


def _compile_condition(cond: Condition) -> Predicate:
    column = MONEY_FIELDS.get(cond.field, cond.field)
    op = cond.op
    if cond.field in LIST_FIELDS:
        if op == "contains":
            needle = cond.value
            return lambda row: needle in (row.get(column) or ())
        wanted = set(cond.value)
        if op == "contains_any":
            return lambda row: not wanted.isdisjoint(row.get(column) or ())
        return lambda row: wanted.issubset(row.get(column) or ())
    if isinstance(cond.value, list):
        values = [_literal(cond.field, v) for v in cond.value]
    else:
        value = _literal(cond.field, cond.value)
    if op == "between":
        low, high = values

        def between(row: Row) -> bool:
            v = row.get(column)
            return v is not None and low <= v <= high

        return between
    if op in ("in", "not_in"):
        members = set(values)
        negate = op == "not_in"

        def is_in(row: Row) -> bool:
            v = row.get(column)
            return v is not None and ((v in members) != negate)

        return is_in
    compare = _SCALAR[op]

    def scalar(row: Row) -> bool:
        v = row.get(column)
        return v is not None and bool(compare(v, value))

    return scalar


def referenced_fields(rule: Rule) -> set[str]:
    """The fields a rule reads (for documentation and validation messages)."""
    if isinstance(rule, AllOf):
        return set().union(*(referenced_fields(r) for r in rule.all))
    if isinstance(rule, AnyOf):
        return set().union(*(referenced_fields(r) for r in rule.any))
    if isinstance(rule, NotRule):
        return referenced_fields(rule.not_)
    return {rule.field}
