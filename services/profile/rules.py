"""The tag-rule language (pure): the segment service's JSON shape, over profile facts.

A rule is one of::

    {"all": [rule, ...]}          every sub-rule holds
    {"any": [rule, ...]}          at least one holds
    {"not": rule}                 the sub-rule does not hold
    {"field": F, "op": OP, "value": V}

Comparison ops: ``eq ne gt gte lt lte`` (one value), ``between`` ([low, high], both
inclusive), ``in`` / ``not_in`` (a list). On list fields (``categories``, ``brands``,
``channels``, ``segments``): ``contains`` (one value), ``contains_any`` / ``contains_all``
(a list). Money fields take decimal strings, date fields ISO 8601 timestamps with an
offset. A profile missing a value never satisfies a comparison on it (``not`` inverts).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

NUMBER_FIELDS = frozenset(
    {
        "order_count",
        "orders_placed",
        "refund_count",
        "cancelled_count",
        "complaints",
        "tickets",
        "reviews",
        "good_reviews",
        "bad_reviews",
        "returns",
        "disputes",
        "r_score",
        "f_score",
        "m_score",
        "recency_days",
        "frequency",
        "discount_share",
        "average_rating",
    }
)
MONEY_FIELDS = frozenset({"total_spent", "average_order_value", "monetary"})
DATE_FIELDS = frozenset({"first_order_at", "last_order_at"})
TEXT_FIELDS = frozenset(
    {
        "rfm_segment",
        "lifecycle_stage",
        "value_quadrant",
        "purchase_bucket",
        "province",
        "city",
        "price_band",
        "price_sensitivity",
        "preferred_channel",
        "gender",
        "style",
        "contact_tolerance",
    }
)
BOOL_FIELDS = frozenset({"membership_interest", "points_interest"})
LIST_FIELDS = frozenset({"categories", "brands", "channels", "segments"})
FIELDS = sorted(
    NUMBER_FIELDS | MONEY_FIELDS | DATE_FIELDS | TEXT_FIELDS | BOOL_FIELDS | LIST_FIELDS
)

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
        if self.field in LIST_FIELDS and self.op not in LIST_OPS:
            raise ValueError(f"{self.field} takes contains, contains_any or contains_all")
        if self.field not in LIST_FIELDS and self.op in LIST_OPS:
            raise ValueError(f"{self.op} applies to {', '.join(sorted(LIST_FIELDS))} only")
        if self.field in BOOL_FIELDS and self.op not in ("eq", "ne"):
            raise ValueError(f"{self.field} takes eq or ne")
        if self.op == "between" and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError("between takes [low, high]")
        if self.op in ("in", "not_in", "contains_any", "contains_all") and not isinstance(
            self.value, list
        ):
            raise ValueError(f"{self.op} takes a list")
        for item in self.value if isinstance(self.value, list) else [self.value]:
            literal(self.field, item)
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


class RuleAdapter(BaseModel):
    rule: Rule


def parse_rule(raw: Any) -> Rule:
    """Validate a JSON rule (raises pydantic.ValidationError)."""
    return RuleAdapter.model_validate({"rule": raw}).rule


def literal(field: str, value: Any) -> Any:
    """A rule literal in the type its field compares with (raises ValueError)."""
    if field in MONEY_FIELDS:
        try:
            return Decimal(str(value))
        except (InvalidOperation, ValueError) as exc:
            raise ValueError(f"{field} takes decimal amounts, not {value!r}") from exc
    if field in DATE_FIELDS:
        try:
            parsed = datetime.fromisoformat(str(value))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{field} takes ISO 8601 timestamps with an offset") from exc
        if parsed.tzinfo is None:
            raise ValueError(f"{field} takes ISO 8601 timestamps with an offset")
        return parsed
    if field in NUMBER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{field} takes numbers, not {value!r}")
        return value
    if field in BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{field} takes true or false")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{field} takes strings, not {value!r}")
    return value


def matches(rule: Rule, facts: dict[str, Any]) -> bool:
    """Whether one profile's facts satisfy ``rule``."""
    if isinstance(rule, AllOf):
        return all(matches(sub, facts) for sub in rule.all)
    if isinstance(rule, AnyOf):
        return any(matches(sub, facts) for sub in rule.any)
    if isinstance(rule, NotRule):
        return not matches(rule.not_, facts)
    return _condition(rule, facts)


def _condition(cond: Condition, facts: dict[str, Any]) -> bool:
    actual = facts.get(cond.field)
    op, raw = cond.op, cond.value
    if cond.field in LIST_FIELDS:
        have = set(actual or ())
        wanted = set(raw) if isinstance(raw, list) else {raw}
        return wanted.issubset(have) if op == "contains_all" else bool(wanted & have)
    if actual is None:
        return False
    if cond.field in DATE_FIELDS and isinstance(actual, str):
        actual = datetime.fromisoformat(actual)
    if cond.field in MONEY_FIELDS:
        actual = Decimal(str(actual))
    if op in ("in", "not_in"):
        hit = actual in [literal(cond.field, v) for v in raw]
        return hit if op == "in" else not hit
    if op == "between":
        low, high = (literal(cond.field, v) for v in raw)
        return bool(low <= actual <= high)
    value = literal(cond.field, raw)
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    if op == "gt":
        return bool(actual > value)
    if op == "gte":
        return bool(actual >= value)
    if op == "lt":
        return bool(actual < value)
    return bool(actual <= value)
