"""The shared rule language: one precise error per bad part, the limits, literals, and the
per-record evaluator over a catalogue."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared import rules
from shared.rules import MAX_DEPTH, MAX_PARTS, MAX_VALUES, Catalogue, Condition

FACTS = Catalogue(
    numbers=("order_count", "rating"),
    money=("total_spent",),
    dates=("last_order_at",),
    text=("city",),
    booleans=("member",),
    lists=("tags",),
)
#: the same fields over rows that hold money in 1/10,000 units under another key
ROWS = Catalogue(
    numbers=("order_count", "rating"),
    money=("total_spent",),
    dates=("last_order_at",),
    text=("city",),
    booleans=("member",),
    lists=("tags",),
    keys={"total_spent": "total_spent_e4"},
    money_e4=True,
)

FACT = {
    "order_count": 3,
    "rating": 4.5,
    "total_spent": "299.00",
    "last_order_at": "2026-11-01T10:00:00+08:00",
    "city": "杭州市",
    "member": True,
    "tags": ["vip", "gift"],
}
ROW = {**FACT, "total_spent_e4": 2_990_000, "total_spent": None}


class Body(BaseModel):
    rule: Annotated[rules.Rule, FACTS]


def errors_of(raw: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"rule": raw})
    return [
        (".".join(str(part) for part in error["loc"]), error["type"], error["msg"])
        for error in caught.value.errors()
    ]


def nested(condition: dict[str, Any]) -> dict[str, Any]:
    """``condition`` two levels down, beside a good one."""
    good = {"field": "order_count", "op": "gte", "value": 1}
    return {"all": [good, {"any": [good, {"not": condition}]}]}


WHERE = "rule.all.1.any.1.not"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (
            {"field": "nope", "op": "eq", "value": 1},
            (
                f"{WHERE}.field",
                "rule.field",
                "unknown field 'nope'; known: city, last_order_at, member, order_count, rating, "
                "tags, total_spent",
            ),
        ),
        (
            {"field": "tags", "op": "eq", "value": "vip"},
            (f"{WHERE}.op", "rule.op", "tags takes contains, contains_any or contains_all"),
        ),
        (
            {"field": "city", "op": "contains", "value": "x"},
            (f"{WHERE}.op", "rule.op", "contains applies to tags only"),
        ),
        (
            {"field": "member", "op": "gt", "value": True},
            (f"{WHERE}.op", "rule.op", "member takes eq or ne"),
        ),
        (
            {"field": "order_count", "op": "gt", "value": "many"},
            (f"{WHERE}.value", "rule.value", "order_count takes numbers, not 'many'"),
        ),
        (
            {"field": "city", "op": "in", "value": ["杭州市", 3]},
            (f"{WHERE}.value.1", "rule.value", "city takes strings, not 3"),
        ),
        (
            {"field": "order_count", "op": "between", "value": [1]},
            (f"{WHERE}.value", "rule.value", "between takes [low, high]"),
        ),
        (
            {"field": "city", "op": "in", "value": "杭州市"},
            (f"{WHERE}.value", "rule.value", "in takes a list"),
        ),
        (
            {"field": "order_count", "op": "eq", "value": [1, 2]},
            (f"{WHERE}.value", "rule.value", "eq takes one value"),
        ),
        (
            {"field": "tags", "op": "contains", "value": ["a", "b"]},
            (
                f"{WHERE}.value",
                "rule.value",
                "contains takes one value (contains_any takes a list)",
            ),
        ),
        (
            {"field": "order_count", "op": "eq"},
            (f"{WHERE}.value", "missing", "Field required"),
        ),
        (
            {"field": "order_count", "op": "equals", "value": 1},
            (
                f"{WHERE}.op",
                "literal_error",
                "Input should be 'eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'between', 'in', "
                "'not_in', 'contains', 'contains_any' or 'contains_all'",
            ),
        ),
        (
            {"field": "order_count", "op": "eq", "value": 1, "unit": "pcs"},
            (f"{WHERE}.unit", "extra_forbidden", "Extra inputs are not permitted"),
        ),
        (
            {"feild": "order_count"},
            (
                WHERE,
                "rule.shape",
                "a rule is one of {all: [rules]}, {any: [rules]}, {not: rule} "
                "or {field, op, value}",
            ),
        ),
    ],
)
def test_a_bad_nested_condition_is_one_error_at_its_path(
    condition: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    assert errors_of(nested(condition)) == [expected]


def test_each_bad_condition_is_reported_once() -> None:
    raw = {
        "any": [
            {"field": "nope", "op": "eq", "value": 1},
            {"field": "order_count", "op": "eq", "value": 1},
            {"field": "total_spent", "op": "gt", "value": "lots"},
        ]
    }
    assert errors_of(raw) == [
        (
            "rule.any.0.field",
            "rule.field",
            f"unknown field 'nope'; known: {', '.join(FACTS.names)}",
        ),
        ("rule.any.2.value", "rule.value", "total_spent takes decimal amounts, not 'lots'"),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        {"all": [], "any": []},  # two shapes in one object
        {"all": [{"field": "city", "op": "eq", "value": "x"}], "field": "city"},
        {},
        "city = x",
        [{"field": "city", "op": "eq", "value": "x"}],
    ],
)
def test_a_rule_has_exactly_one_shape(raw: Any) -> None:
    ((where, code, _),) = errors_of(raw)
    assert (where, code) == ("rule", "rule.shape")


def test_an_empty_combinator_is_refused() -> None:
    ((where, code, _),) = errors_of({"not": {"any": []}})
    assert (where, code) == ("rule.not.any", "too_short")


def chain(depth: int) -> dict[str, Any]:
    """A rule ``depth`` levels deep: nots around one condition."""
    rule: dict[str, Any] = {"field": "city", "op": "eq", "value": "x"}
    for _ in range(depth - 1):
        rule = {"not": rule}
    return rule


def test_rules_nest_at_most_max_depth_levels() -> None:
    assert FACTS.parse(chain(MAX_DEPTH))
    deepest = ".".join(["rule", *["not"] * MAX_DEPTH])
    assert errors_of(chain(MAX_DEPTH + 1)) == [
        (deepest, "rule.too_deep", f"rules nest at most {MAX_DEPTH} levels deep")
    ]
    # far deeper than recursion could follow: still one error, not a crash
    ((_, code, _),) = errors_of(chain(100_000))
    assert code == "rule.too_deep"


def test_rules_have_at_most_max_parts() -> None:
    condition = {"field": "city", "op": "eq", "value": "x"}
    assert FACTS.parse({"any": [condition] * (MAX_PARTS - 1)})
    ((where, code, _),) = errors_of({"any": [condition] * MAX_PARTS})
    assert (where, code) == ("rule", "rule.too_large")


def test_a_list_holds_at_most_max_values() -> None:
    assert FACTS.parse({"field": "city", "op": "in", "value": ["x"] * MAX_VALUES})
    ((where, code, message),) = errors_of(
        {"field": "city", "op": "in", "value": ["x"] * (MAX_VALUES + 1)}
    )
    assert (where, code, message) == (
        "rule.value",
        "rule.value",
        f"in takes at most {MAX_VALUES} values",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "total_spent",
            "1.00001",
            "total_spent takes amounts with at most 4 decimal places, not '1.00001'",
        ),
        ("total_spent", "NaN", "total_spent takes decimal amounts, not 'NaN'"),
        ("total_spent", "Infinity", "total_spent takes decimal amounts, not 'Infinity'"),
        ("total_spent", True, "total_spent takes decimal amounts, not True"),
        ("rating", float("nan"), "rating takes finite numbers, not nan"),
        ("rating", True, "rating takes numbers, not True"),
        ("last_order_at", "2026-11-01", "last_order_at takes ISO 8601 timestamps with an offset"),
        ("last_order_at", 2026, "last_order_at takes ISO 8601 timestamps with an offset"),
        ("member", "yes", "member takes true or false"),
        ("city", None, "city takes strings, not None"),
    ],
)
def test_literals_are_checked_at_definition(field: str, value: Any, message: str) -> None:
    assert errors_of({"field": field, "op": "eq", "value": value}) == [
        ("rule.value", "rule.value", message)
    ]


def test_money_literals_take_the_records_form() -> None:
    assert FACTS.literal("total_spent", "12.5") == Decimal("12.5")
    assert ROWS.literal("total_spent", "12.5") == 125_000
    assert ROWS.literal("total_spent", 12) == 120_000
    assert ROWS.literal("total_spent", "1.00000") == 10_000  # zeros beyond 4 places are fine


def test_a_condition_built_in_code_is_checked_against_the_catalogue() -> None:
    condition = Condition(field="city", op="eq", value="x")
    assert Body(rule=condition).rule is condition
    with pytest.raises(ValidationError) as caught:
        Body(rule=Condition(field="nope", op="eq", value="x"))
    (error,) = caught.value.errors()
    assert (error["loc"], error["type"]) == (("rule", "field"), "rule.field")


def test_a_rule_round_trips_through_json() -> None:
    raw = {
        "all": [
            {"field": "total_spent", "op": "between", "value": ["100", "500.00"]},
            {"not": {"field": "tags", "op": "contains_any", "value": ["x"]}},
        ]
    }
    adapter: TypeAdapter[rules.Rule] = TypeAdapter(Annotated[rules.Rule, FACTS])
    rule = FACTS.parse(raw)
    assert adapter.dump_python(rule, mode="json", by_alias=True) == raw
    assert FACTS.parse(adapter.dump_python(rule, mode="json", by_alias=True)) == rule


def test_the_schema_describes_the_catalogues_fields() -> None:
    described = Body.model_json_schema()["properties"]["rule"]["description"]
    assert described == FACTS.describe()
    assert "Booleans: member (ops eq ne)." in described
    assert "Lists: tags (ops contains contains_any contains_all)." in described
    with pytest.raises(ValueError, match="listed twice"):
        Catalogue(numbers=("a",), text=("a",))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"field": "order_count", "op": "gte", "value": 3}, True),
        ({"field": "order_count", "op": "gt", "value": 3}, False),
        ({"field": "rating", "op": "in", "value": [4.5, 5]}, True),
        ({"field": "total_spent", "op": "between", "value": ["100", "299.00"]}, True),
        ({"field": "total_spent", "op": "gt", "value": "299"}, False),
        ({"field": "total_spent", "op": "lt", "value": "299.0001"}, True),
        ({"field": "last_order_at", "op": "gte", "value": "2026-11-01T02:00:00+00:00"}, True),
        ({"field": "last_order_at", "op": "gt", "value": "2026-11-01T02:00:00Z"}, False),
        ({"field": "city", "op": "not_in", "value": ["上海市"]}, True),
        ({"field": "member", "op": "ne", "value": False}, True),
        ({"field": "tags", "op": "contains", "value": "vip"}, True),
        ({"field": "tags", "op": "contains_any", "value": ["new", "gift"]}, True),
        ({"field": "tags", "op": "contains_all", "value": ["vip", "new"]}, False),
        (
            {
                "all": [
                    {"field": "city", "op": "eq", "value": "杭州市"},
                    {
                        "any": [
                            {"field": "rating", "op": "lt", "value": 2},
                            {"field": "member", "op": "eq", "value": True},
                        ]
                    },
                    {"not": {"field": "tags", "op": "contains", "value": "complained"}},
                ]
            },
            True,
        ),
    ],
)
def test_a_record_is_matched_the_same_whichever_form_it_holds(
    rule: dict[str, Any], expected: bool
) -> None:
    assert FACTS.matches(FACTS.parse(rule), FACT) is expected
    assert ROWS.predicate(ROWS.parse(rule))(ROW) is expected
    # facts held as values rather than text
    typed = {
        **FACT,
        "total_spent": Decimal("299.00"),
        "last_order_at": datetime(2026, 11, 1, 2, tzinfo=UTC),
    }
    assert FACTS.matches(FACTS.parse(rule), typed) is expected


@pytest.mark.parametrize(
    "rule",
    [
        {"field": "order_count", "op": "ne", "value": 1},
        {"field": "city", "op": "not_in", "value": ["x"]},
        {"field": "total_spent", "op": "lt", "value": "1000"},
        {"field": "last_order_at", "op": "lt", "value": "2030-01-01T00:00:00+00:00"},
        {"field": "member", "op": "ne", "value": True},
        {"field": "tags", "op": "contains_all", "value": ["vip"]},
    ],
)
def test_a_missing_value_never_satisfies_a_condition_and_not_inverts(rule: dict[str, Any]) -> None:
    parsed = FACTS.parse(rule)
    assert not FACTS.matches(parsed, {})
    assert not FACTS.matches(parsed, dict.fromkeys(FACT))
    assert FACTS.matches(FACTS.parse({"not": rule}), {})


# --------------------------------------------------------------------------- normalised literals


def _service_catalogues() -> list[Any]:
    from services.campaign import rules as campaign_rules
    from services.profile import rules as profile_rules
    from services.segment import rules as segment_rules

    return [profile_rules.CATALOGUE, segment_rules.CATALOGUE, campaign_rules.CATALOGUE]


@pytest.mark.parametrize("spelling", ["浙江", "浙江省", "zhejiang", "Zhejiang", " 浙江 "])
def test_province_and_city_literals_are_normalised_like_search_in_every_service(
    spelling: str,
) -> None:
    record = {"province": "浙江省", "city": "杭州市"}
    for catalogue in _service_catalogues():
        for raw in (
            {"field": "province", "op": "eq", "value": spelling},
            {"field": "province", "op": "in", "value": [spelling, "江苏"]},
            {"all": [{"field": "province", "op": "eq", "value": spelling},
                     {"field": "city", "op": "eq", "value": "杭州"}]},
        ):  # fmt: skip
            assert catalogue.matches(catalogue.parse(raw), record), (catalogue.names, raw)


@pytest.mark.parametrize("spelling", ["杭州", "杭州市", "hangzhou", "Hangzhou", "Hang Zhou"])
def test_city_literals_in_pinyin_are_normalised_in_every_service(spelling: str) -> None:
    record = {"province": "浙江省", "city": "杭州市"}
    for catalogue in _service_catalogues():
        for raw in (
            {"field": "city", "op": "eq", "value": spelling},
            {"field": "city", "op": "in", "value": [spelling, "南京"]},
        ):
            assert catalogue.matches(catalogue.parse(raw), record), (catalogue.names, raw)
        other = catalogue.parse({"field": "province", "op": "eq", "value": "江苏"})
        assert not catalogue.matches(other, record)


def test_gender_and_channel_literals_are_normalised_like_the_values() -> None:
    from services.profile import rules as profile_rules

    catalogue = profile_rules.CATALOGUE
    facts = {"gender": "male", "preferred_channel": "taobao"}
    for raw in (
        {"field": "gender", "op": "eq", "value": "男"},
        {"field": "gender", "op": "eq", "value": "M"},
        {"field": "preferred_channel", "op": "eq", "value": "淘宝"},
        {"field": "preferred_channel", "op": "eq", "value": "Taobao"},
    ):
        assert catalogue.matches(catalogue.parse(raw), facts), raw


def test_gender_and_channel_literals_exist_in_profile_tag_rules_only() -> None:
    from services.campaign import rules as campaign_rules
    from services.profile import rules as profile_rules
    from services.segment import rules as segment_rules

    rule = {"field": "gender", "op": "eq", "value": "男"}
    tagged = profile_rules.CATALOGUE
    assert tagged.matches(tagged.parse(rule), {"gender": "male"})
    channel = {"field": "preferred_channel", "op": "eq", "value": "淘宝"}
    assert tagged.matches(tagged.parse(channel), {"preferred_channel": "taobao"})
    for catalogue in (segment_rules.CATALOGUE, campaign_rules.CATALOGUE):
        for raw in (rule, channel):
            with pytest.raises(ValidationError) as caught:
                catalogue.parse(raw)
            assert [e["type"] for e in caught.value.errors()] == ["rule.field"]
