"""Pure normalisation, masking and rule evaluation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.profile.domain import OPERATOR, Profile
from services.profile.facts import observe
from services.profile.masking import mask_value
from services.profile.normalize import (
    mask_email,
    mask_name,
    mask_phone,
    names_conflict,
    normalize_email,
)
from services.profile.rules import matches, parse_rule
from shared.phones import phone_e164

FIVE_SPELLINGS = [
    "13800138000",
    "+86 138 0013 8000",
    "138-0013-8000",
    "１３８００１３８０００",  # full-width digits
    "0086 138 0013 8000",
]


@pytest.mark.parametrize("spelling", FIVE_SPELLINGS)
def test_five_spellings_of_one_mobile_are_one_e164(spelling: str) -> None:
    assert phone_e164(spelling) == "+8613800138000"


def test_other_spellings_and_junk() -> None:
    assert phone_e164("＋86-138-0013-8000") == "+8613800138000"
    assert phone_e164("8613800138000") == "+8613800138000"
    assert phone_e164("not a number") is None
    assert phone_e164("12345") is None
    assert phone_e164("+1 415 555 2671") == "+14155552671"
    assert normalize_email("  ZhangSan@Example.COM ") == "zhangsan@example.com"
    assert normalize_email("no-at-sign") is None


def test_masking() -> None:
    assert mask_phone("+8613800138000") == "138****8000"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("John Smith") == "J*** S****"
    assert mask_email("zhangsan@example.com") == "z***@example.com"
    masked = mask_value("address", {"province": "浙江省", "address": "文三路 100 号"})
    assert masked == {"province": "浙江省", "address": "****"}


def test_name_conflicts_ignore_spacing_and_case() -> None:
    assert names_conflict("张三", "李四")
    assert not names_conflict("张 三", "张三")
    assert not names_conflict("John", "JOHN")
    assert not names_conflict(None, "张三")


def test_operator_edit_wins_over_newer_derived_data() -> None:
    profile = Profile(first_seen="2026-01-01T00:00:00.000000+00:00")
    assert observe(profile, "name", "张三", "order:tmall", "2026-01-02T00:00:00.000000+00:00")
    assert observe(profile, "name", "张叁", OPERATOR, "2026-01-03T00:00:00.000000+00:00")
    assert not observe(profile, "name", "张三", "order:jd", "2026-02-01T00:00:00.000000+00:00")
    assert profile.facts["name"] == "张叁"
    assert [a.value for a in profile.provenance["name"].alternatives] == ["张三"]
    # newest derived wins among derived sources
    observe(profile, "city", "杭州市", "order:tmall", "2026-01-02T00:00:00.000000+00:00")
    observe(profile, "city", "上海市", "order:tmall", "2026-01-05T00:00:00.000000+00:00")
    observe(profile, "city", "北京市", "customer:crm", "2026-01-04T00:00:00.000000+00:00")
    assert profile.facts["city"] == "上海市"
    assert [a.value for a in profile.provenance["city"].alternatives] == ["北京市"]


RULE = {
    "all": [
        {"field": "order_count", "op": "gte", "value": 2},
        {
            "any": [
                {"field": "categories", "op": "contains", "value": "scarves"},
                {"field": "province", "op": "in", "value": ["浙江省", "江苏省"]},
            ]
        },
        {"not": {"field": "lifecycle_stage", "op": "eq", "value": "lost"}},
        {"field": "total_spent", "op": "between", "value": ["100", "1000.00"]},
    ]
}


def test_tag_rules_evaluate_profile_facts() -> None:
    rule = parse_rule(RULE)
    facts = {
        "order_count": 2,
        "categories": ["hats"],
        "province": "浙江省",
        "lifecycle_stage": "active",
        "total_spent": "299.00",
    }
    assert matches(rule, facts)
    assert not matches(rule, {**facts, "lifecycle_stage": "lost"})
    assert not matches(rule, {**facts, "order_count": 1})
    assert not matches(rule, {**facts, "total_spent": None})  # missing never satisfies
    assert not matches(rule, {**facts, "province": "广东省"})


def test_bad_rules_are_rejected() -> None:
    for bad in (
        {"field": "nope", "op": "eq", "value": 1},
        {"field": "order_count", "op": "contains", "value": 1},
        {"field": "order_count", "op": "gt", "value": "many"},
        {"field": "first_order_at", "op": "gt", "value": "2026-01-01"},
        {"all": []},
    ):
        with pytest.raises(ValidationError):
            parse_rule(bad)


def test_a_bad_tag_rule_is_one_error_at_its_path() -> None:
    bad = {
        "all": [
            {"field": "order_count", "op": "gte", "value": 2},
            {"any": [{"not": {"field": "membership_interest", "op": "gt", "value": True}}]},
        ]
    }
    with pytest.raises(ValidationError) as caught:
        parse_rule(bad)
    assert [(e["loc"], e["type"], e["msg"]) for e in caught.value.errors()] == [
        (("all", 1, "any", 0, "not", "op"), "rule.op", "membership_interest takes eq or ne")
    ]


def test_tag_rules_read_booleans_dates_and_money_as_facts_hold_them() -> None:
    rule = parse_rule(
        {
            "all": [
                {"field": "points_interest", "op": "eq", "value": True},
                {"field": "last_order_at", "op": "gte", "value": "2026-11-01T00:00:00+08:00"},
                {"field": "average_order_value", "op": "gt", "value": "99.99"},
                {"field": "brands", "op": "contains_all", "value": ["Acme"]},
            ]
        }
    )
    facts = {
        "points_interest": True,
        "last_order_at": "2026-10-31T16:00:00.000000+00:00",  # the same instant
        "average_order_value": "100.00",
        "brands": ["Acme", "Other"],
    }
    assert matches(rule, facts)
    assert not matches(rule, {**facts, "points_interest": None})
    assert not matches(rule, {**facts, "last_order_at": "2026-10-31T15:59:59.999999+00:00"})
    assert not matches(rule, {**facts, "average_order_value": "99.99"})
    assert not matches(rule, {**facts, "brands": []})
