"""The custom-segment rule language (pure)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from services.segment.rules import CATALOGUE, Rule, evaluate

RULE: TypeAdapter[Rule] = TypeAdapter(Rule)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "p"],
            "r_score": pd.array([5, 2, None], dtype="Int64"),
            "f_score": pd.array([4, 1, None], dtype="Int64"),
            "m_score": pd.array([3, 1, None], dtype="Int64"),
            "recency_days": pd.array([3, 100, None], dtype="Int64"),
            "frequency": [4, 1, 0],
            "order_count": [6, 1, 0],
            "monetary_e4": [5_000_000, 100_000, 0],
            "total_spent_e4": [6_000_000, 100_000, 0],
            "first_order_at": pd.to_datetime(["2025-01-01", "2026-08-01", None], utc=True),
            "last_order_at": pd.to_datetime(["2026-11-17", "2026-08-12", None], utc=True),
            "rfm_code": ["543", "211", None],
            "rfm_segment": ["champions", "hibernating", None],
            "lifecycle_stage": ["active", "sleeping", "prospect"],
            "purchase_bucket": ["4+", "1", None],
            "funnel_bucket": ["5+", "1", None],
            "value_quadrant": ["premium", "pending", None],
            "currency": ["CNY", "CNY", "CNY"],
            "province": ["浙江省", None, "广东省"],
            "city": ["杭州市", None, None],
            "channels": [("jd", "tmall"), ("tmall",), ()],
            "categories": [("shoes", "bags"), ("bags",), ()],
        }
    )


SELECTIONS = [
    ({"field": "r_score", "op": "gte", "value": 4}, ["a"]),
    ({"field": "r_score", "op": "lt", "value": 4}, ["b"]),  # the prospect has no score
    ({"field": "monetary", "op": "between", "value": ["10", "500.00"]}, ["a", "b"]),
    ({"field": "average_order_value", "op": "gt", "value": "99.99"}, ["a"]),
    ({"field": "average_order_value", "op": "gt", "value": "100"}, []),
    ({"field": "lifecycle_stage", "op": "not_in", "value": ["active", "new"]}, ["b", "p"]),
    ({"field": "province", "op": "ne", "value": "浙江省"}, ["p"]),
    ({"field": "categories", "op": "contains_all", "value": ["shoes", "bags"]}, ["a"]),
    ({"field": "channels", "op": "contains_any", "value": ["jd", "wechat"]}, ["a"]),
    ({"field": "first_order_at", "op": "gte", "value": "2026-01-01T00:00:00+08:00"}, ["b"]),
    ({"not": {"field": "frequency", "op": "eq", "value": 0}}, ["a", "b"]),
    (
        {
            "any": [
                {"field": "rfm_segment", "op": "eq", "value": "champions"},
                {
                    "all": [
                        {"field": "order_count", "op": "eq", "value": 1},
                        {"field": "recency_days", "op": "gt", "value": 90},
                    ]
                },
            ]
        },
        ["a", "b"],
    ),
    ({"field": "r_score", "op": "ne", "value": 5}, ["b"]),
    ({"field": "city", "op": "not_in", "value": ["上海市"]}, ["a"]),
    ({"field": "rfm_code", "op": "gte", "value": "300"}, ["a"]),
    ({"field": "total_spent", "op": "in", "value": ["10", "600.0000"]}, ["a", "b"]),
    ({"field": "last_order_at", "op": "lt", "value": "2026-08-12T08:00:01+08:00"}, ["b"]),
    ({"field": "channels", "op": "contains", "value": "jd"}, ["a"]),
    ({"not": {"field": "categories", "op": "contains_any", "value": ["bags"]}}, ["p"]),
]


@pytest.mark.parametrize(("rule", "members"), SELECTIONS)
def test_rules_select_members(rule: dict, members: list[str]) -> None:
    data = frame()
    mask = evaluate(RULE.validate_python(rule), data)
    assert data["customer_id"][mask].tolist() == members


@pytest.mark.parametrize(
    "rule",
    [
        {"field": "shoe_size", "op": "eq", "value": 1},
        {"field": "monetary", "op": "gt", "value": "lots"},
        {"field": "r_score", "op": "between", "value": [1]},
        {"field": "categories", "op": "eq", "value": "shoes"},
        {"field": "province", "op": "contains", "value": "x"},
        {"field": "last_order_at", "op": "gt", "value": "yesterday"},
        {"all": []},
        {"field": "r_score", "op": "eq", "value": [4, 5]},  # one value, not a list
        {"field": "categories", "op": "contains", "value": ["shoes", "bags"]},
        {"field": "monetary", "op": "gt", "value": "Infinity"},
        {"field": "monetary", "op": "gt", "value": "0.00001"},  # finer than stored
        {"field": "monetary", "op": "gte", "value": "1", "not": {}},
    ],
)
def test_invalid_rules_are_rejected(rule: dict) -> None:
    with pytest.raises(ValidationError):
        RULE.validate_python(rule)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as the shared per-record evaluator reads them."""
    rows: list[dict[str, Any]] = []
    for values in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        row = {str(name): value for name, value in values.items()}
        orders = row["order_count"]
        row["average_order_value"] = row["total_spent_e4"] // orders if orders else None
        for name in ("first_order_at", "last_order_at"):
            row[name] = row[name].to_pydatetime() if row[name] is not None else None
        rows.append(row)
    return rows


@pytest.mark.parametrize(("rule", "members"), SELECTIONS)
def test_the_vectorised_evaluator_agrees_with_the_shared_per_record_one(
    rule: dict, members: list[str]
) -> None:
    data = frame()
    parsed = RULE.validate_python(rule)
    test = CATALOGUE.predicate(parsed)
    rows = records(data)
    assert evaluate(parsed, data).tolist() == [test(row) for row in rows]
    assert [row["customer_id"] for row in rows if test(row)] == members
