"""The custom-segment rule language (pure)."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from services.segment.rules import Rule, evaluate

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


@pytest.mark.parametrize(
    ("rule", "members"),
    [
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
    ],
)
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
    ],
)
def test_invalid_rules_are_rejected(rule: dict) -> None:
    with pytest.raises(ValidationError):
        RULE.validate_python(rule)
