"""Validation and normalisation rules: pure unit tests, no broker, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.ingest.validation import (
    RecordRejected,
    Rules,
    parse_json,
    validate_customer,
    validate_interaction,
    validate_order,
)

RULES = Rules()
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def order(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": "T20261101-0001",
        "customer_id": "tb_zhangsan88",
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "199.00",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def codes(raw: Any, validator: Any = validate_order, rules: Rules = RULES) -> set[str]:
    with pytest.raises(RecordRejected) as caught:
        validator(raw, rules, NOW)
    return {f"{r.field}:{r.code}" for r in caught.value.reasons}


def dropped(
    raw: Any, validator: Any = validate_order, rules: Rules = RULES
) -> tuple[Any, set[str]]:
    """The accepted record and its warnings (``field:code``): the fields dropped from it."""
    warnings: list[Any] = []
    result = validator(raw, rules, NOW, warnings)
    return result, {f"{w.field}:{w.code}" for w in warnings}


def test_the_contract_example_is_accepted_unchanged() -> None:
    raw = order(
        paid_at="2026-11-01T10:02:13+08:00",
        updated_at="2026-11-01T10:02:13+08:00",
        refunded_amount="0.00",
        channel="tmall",
        items=[
            {
                "sku": "A-1",
                "name": "羊毛围巾",
                "category": "accessories",
                "brand": "Acme",
                "unit_price": "99.50",
                "quantity": 2,
            }
        ],
        buyer={"name": "张三", "mobile": "+86 138 0013 8000", "email": None},
        shipping={
            "province": "浙江省",
            "city": "杭州市",
            "district": "西湖区",
            "address": "文三路 100 号",
        },
    )
    result = validate_order(raw, RULES, NOW)
    assert result.total_amount == Decimal("199.00")
    assert result.buyer is not None and result.buyer.mobile == "+8613800138000"
    assert result.shipping is not None and result.shipping.city == "杭州市"
    assert result.items[0].unit_price == Decimal("99.50")


# --------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("currency", "amount", "expected"),
    [
        ("CNY", "199", "199.00"),
        ("cny", 199.5, "199.50"),
        ("RMB", "1,299.00", "1299.00"),
        ("CNY", "１９９.００", "199.00"),
        ("JPY", "1500", "1500"),
        ("KWD", "1.250", "1.250"),
        ("CNY", "199.000", "199.00"),  # trailing zeros are not extra precision
        ("CNY", 0, "0.00"),
    ],
)
def test_money_is_decimal_in_the_currency_minor_units(
    currency: str, amount: Any, expected: str
) -> None:
    result = validate_order(order(currency=currency, total_amount=amount), RULES, NOW)
    assert str(result.total_amount) == expected
    assert result.currency == currency.upper().replace("RMB", "CNY")


@pytest.mark.parametrize(
    ("currency", "amount", "code"),
    [
        ("CNY", "NaN", "total_amount:money.not_finite"),
        ("CNY", "Infinity", "total_amount:money.not_finite"),
        ("CNY", "-inf", "total_amount:money.not_finite"),
        ("CNY", float("nan"), "total_amount:money.not_finite"),
        ("CNY", "19.999", "total_amount:money.scale"),
        ("JPY", "10.5", "total_amount:money.scale"),
        ("CNY", "1e12", "total_amount:money.too_large"),
        ("CNY", "9" * 60, "total_amount:money.too_large"),
        ("CNY", "-1.00", "total_amount:money.negative"),
        ("CNY", "12abc", "total_amount:money.format"),
        ("CNY", True, "total_amount:money.type"),
        ("CNY", None, "total_amount:required"),
        ("XYZ", "1.00", "currency:currency.unknown"),
        (None, "1.00", "currency:required"),
    ],
)
def test_bad_money_is_rejected(currency: Any, amount: Any, code: str) -> None:
    assert code in codes(order(currency=currency, total_amount=amount))


def test_refund_cannot_exceed_the_total() -> None:
    assert "refunded_amount:money.refund_exceeds_total" in codes(
        order(total_amount="10.00", refunded_amount="10.01")
    )


# --------------------------------------------------------------------------- time


def test_naive_timestamps_get_the_shop_timezone() -> None:
    result = validate_order(order(created_at="2026-11-01 10:00:00"), RULES, NOW)
    assert result.created_at == datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    assert result.created_at.utcoffset() == timedelta(hours=8)
    other = Rules(shop_timezone=ZoneInfo("Europe/Berlin"))
    result = validate_order(order(created_at="2026-11-01T10:00:00"), other, NOW)
    assert result.created_at == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2026/11/01 10:00:00",
        "2026-11-01T02:00:00Z",
        1793498400,
        1793498400000,
        "1793498400",  # epoch as text, as every CSV value is
        "1793498400000",
    ],
)
def test_timestamp_formats(value: Any) -> None:
    result = validate_order(order(created_at=value), RULES, NOW)
    assert result.created_at == datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("created_at", "2026-11-23T14:00:00+00:00", "created_at:time.future"),
        ("created_at", "1969-12-31T00:00:00+00:00", "created_at:time.too_old"),
        ("created_at", "yesterday", "created_at:time.format"),
        ("created_at", None, "created_at:required"),
        ("paid_at", "2026-10-01T00:00:00+08:00", "paid_at:time.before_created"),
    ],
)
def test_bad_timestamps_are_rejected(field: str, value: Any, code: str) -> None:
    assert code in codes(order(**{field: value}))


def test_history_back_to_1970_is_accepted_on_the_defaults() -> None:
    # CDNOW (1997), the UCI Online Retail set (2010), a shop's 20-year history
    for moment in ("1970-01-01T00:00:00+00:00", "1997-01-01T00:00:00+00:00"):
        assert validate_order(order(created_at=moment), RULES, NOW).created_at.year >= 1970
    stricter = Rules(min_year=2000)
    assert "created_at:time.too_old" in codes(
        order(created_at="1997-01-01T00:00:00+00:00"), rules=stricter
    )


def test_a_little_clock_skew_is_tolerated() -> None:
    soon = (NOW + timedelta(minutes=10)).isoformat()
    assert validate_order(order(created_at=soon), RULES, NOW).created_at > NOW


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PAID", "paid"),
        (" shipped ", "shipped"),
        ("交易成功", "completed"),
        ("等待买家付款", "created"),
        ("交易关闭", "cancelled"),
        ("卖家已发货，等待买家确认", "shipped"),
        ("买家已付款，等待卖家发货", "paid"),
        ("partially_refunded", "partially_refunded"),
    ],
)
def test_status_enum_and_platform_statuses(value: str, expected: str) -> None:
    assert validate_order(order(status=value), RULES, NOW).status.value == expected


def test_unknown_status_is_rejected() -> None:
    assert "status:status.unknown" in codes(order(status="lost_in_mail"))


# --------------------------------------------------------------------------- contacts


@pytest.mark.parametrize(
    "mobile",
    [
        "13800138000",
        "+86 138 0013 8000",
        "138-0013-8000",
        "１３８００１３８０００",
        "(+86) 138 0013 8000",
        "'13800138000",
        "0086 13800138000",
    ],
)
def test_mobiles_become_e164(mobile: str) -> None:
    result = validate_order(order(buyer={"mobile": mobile}), RULES, NOW)
    assert result.buyer is not None and result.buyer.mobile == "+8613800138000"


def test_foreign_numbers_keep_their_country() -> None:
    result = validate_order(order(buyer={"mobile": "+1 650-253-0000"}), RULES, NOW)
    assert result.buyer is not None and result.buyer.mobile == "+16502530000"


def test_an_invalid_mobile_is_dropped_with_a_warning_masked_is_dropped() -> None:
    result, warnings = dropped(order(buyer={"mobile": "12345", "name": "张三"}))
    assert warnings == {"buyer.mobile:phone.invalid"}
    assert result.buyer is not None and result.buyer.mobile is None
    assert result.buyer.name == "张三" and str(result.total_amount) == "199.00"
    result = validate_order(order(buyer={"mobile": "138****8000"}), RULES, NOW)
    assert result.buyer is not None and result.buyer.mobile is None


@pytest.mark.parametrize(
    "mobile",
    ["138 0013 8000x", "13800138000abc", "138 0013 8000 ext. 12", "tel:13800138000", "abc13800138000",
     "138-0013-8000#", "1380013800O"],
)  # fmt: skip
def test_a_mobile_with_junk_is_dropped_not_repaired(mobile: str) -> None:
    # libphonenumber reads past the junk (x as an extension, letters as a vanity number):
    # which part was meant is a guess, so the number is dropped with a warning
    result, warnings = dropped(order(buyer={"mobile": mobile, "name": "张三"}))
    assert warnings == {"buyer.mobile:phone.invalid"}
    assert result.buyer is not None and result.buyer.mobile is None


def test_email_domain_is_lowercased_and_checked() -> None:
    result = validate_order(order(buyer={"email": "Zhang.San@Example.COM"}), RULES, NOW)
    assert result.buyer is not None and result.buyer.email == "Zhang.San@example.com"
    result, warnings = dropped(order(buyer={"email": "not-an-email"}))
    assert warnings == {"buyer.email:email.invalid"}
    assert result.buyer is not None and result.buyer.email is None


# --------------------------------------------------------------------------- text


def test_names_and_addresses_are_nfc_normalised() -> None:
    decomposed = "Jose\u0301 Mu\u0308ller"
    result = validate_order(
        order(buyer={"name": decomposed}, shipping={"address": "  文三路 100 号\u3000 "}),
        RULES,
        NOW,
    )
    assert result.buyer is not None and result.buyer.name == "José Müller"
    assert result.shipping is not None and result.shipping.address == "文三路 100 号"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("abc\x00def", "text.nul"),
        ("abc\ud800def", "text.surrogate"),
        ("abc\x07def", "text.control"),
        ("x" * 101, "text.too_long"),
        (12.5, "type"),
    ],
)
def test_bad_strings_in_descriptive_fields_are_dropped_with_a_warning(
    value: Any, code: str
) -> None:
    result, warnings = dropped(order(buyer={"name": value}))
    assert warnings == {f"buyer.name:{code}"}
    assert result.buyer is not None and result.buyer.name is None


@pytest.mark.parametrize("field", ["order_id", "customer_id"])
def test_bad_strings_in_defining_fields_reject(field: str) -> None:
    assert f"{field}:text.nul" in codes(order(**{field: "abc\x00def"}))


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        ({"shipping": {"address": "x" * 501, "city": "杭州"}}, "shipping.address:text.too_long"),
        ({"shipping": {"mobile": "000"}}, "shipping.mobile:phone.invalid"),
        ({"shipping": "not an object"}, "shipping:type"),
        ({"buyer": {"qq": "12"}}, "buyer.qq:qq.invalid"),
        ({"channel": "x" * 51}, "channel:text.too_long"),
        ({"promotion": "a\x07"}, "promotion:text.control"),
        (
            {"items": [{"name": "a\x00", "unit_price": "199.00", "quantity": 1}]},
            "items[0].name:text.nul",
        ),
    ],
)
def test_no_transaction_is_lost_to_a_contact_or_descriptive_field(
    changes: dict[str, Any], warning: str
) -> None:
    result, warnings = dropped(order(**changes))
    assert warnings == {warning}
    assert result.order_id == "T20261101-0001" and str(result.total_amount) == "199.00"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        (
            {"discount_amount": "500.00", "items": [{"unit_price": "100.00", "quantity": 2}]},
            "discount_amount:money.discount_exceeds_items",
        ),
        (
            {"items": [{"unit_price": "99999.00", "quantity": 1000}]},
            "items:money.items_far_from_total",
        ),
    ],
)
def test_amounts_that_contradict_each_other_reject(changes: dict[str, Any], code: str) -> None:
    assert code in codes(order(**changes))


def test_items_that_disagree_with_the_total_are_a_warning_not_a_silent_pick() -> None:
    result, warnings = dropped(order(items=[{"unit_price": "150.00", "quantity": 2}]))
    assert warnings == {"total_amount:money.items_mismatch"}
    assert str(result.total_amount) == "199.00" and len(result.items) == 1
    # within 5 % (shipping, rounding) or exactly the items less the discount: no warning
    fine = order(discount_amount="101.00", items=[{"unit_price": "150.00", "quantity": 2}])
    assert dropped(fine)[1] == set()


def test_ids_have_a_length_limit_and_numbers_become_strings() -> None:
    assert "order_id:text.too_long" in codes(order(order_id="T" * 129))
    assert validate_order(order(order_id=123456), RULES, NOW).order_id == "123456"


def test_negative_zero_money_is_zero() -> None:
    result = validate_order(order(total_amount="-0.00", refunded_amount="-0"), RULES, NOW)
    assert str(result.total_amount) == "0.00" and str(result.refunded_amount) == "0.00"


def test_json_with_a_byte_order_mark_or_nested_too_deeply() -> None:
    assert parse_json(b'\xef\xbb\xbf{"a": 1.5}') == {"a": 1.5}
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json(b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    # what orjson refuses (NaN, a lone surrogate) is parsed by the fallback with numbers kept
    assert parse_json(b'{"k": NaN, "f": 1.5, "e": 1e2, "t": "\\ud800"}')["f"] == 1.5


@pytest.mark.parametrize(
    ("attributes", "code"),
    [
        ({"k": "\ud800"}, "attributes:text.surrogate"),
        ({"\ud800": "v"}, "attributes:text.surrogate"),
        ({"k": ["a", {"b": "x\x00y"}]}, "attributes:text.nul"),
        ({"k": float("nan")}, "attributes:attributes.not_finite"),
        ({"k": float("-inf")}, "attributes:attributes.not_finite"),
        ({"k": 123456789012345678901234567890}, "attributes:attributes.number_range"),
        # what orjson makes of integers beyond 64 bits: floats (they would change)
        ({"k": float(2**64)}, "attributes:attributes.number_range"),
        ({"k": -float(2**63) - 4096.0}, "attributes:attributes.number_range"),
        ({"k": "x" * 9000}, "attributes:attributes.too_large"),
    ],
)
def test_attributes_are_kept_as_sent_or_dropped(attributes: Any, code: str) -> None:
    result, warnings = dropped(interaction(attributes=attributes), validate_interaction)
    assert warnings == {code} and result.attributes == {}


def test_attributes_keep_their_json_values() -> None:
    sent = {"f": 1.5, "e": 100.0, "b": True, "n": None, "big": 2**63, "nested": {"l": [1, "二"]}}
    kept = validate_interaction(interaction(attributes=sent), RULES, NOW).attributes
    assert kept == sent


def test_lone_surrogate_in_json_reaches_validation() -> None:
    body = b'{"order_id": "T\\ud800", "customer_id": "c"}'
    parsed = parse_json(body)
    assert "order_id:text.surrogate" in codes(parsed)
    with pytest.raises(ValueError):
        parse_json(b"\xff\xfe not json")


# --------------------------------------------------------------------------- regions


@pytest.mark.parametrize(
    ("shipping", "expected"),
    [
        ({"province": "浙江", "city": "杭州"}, ("浙江省", "杭州市", None)),
        ({"city": "杭州", "district": "西湖区"}, ("浙江省", "杭州市", "西湖区")),
        ({"province": "zhejiang", "city": "hangzhou"}, ("浙江省", "杭州市", None)),
        ({"city": "Hangzhou"}, ("浙江省", "杭州市", None)),
        ({"province": "安徽", "city": "suzhou"}, ("安徽省", "宿州市", None)),
        ({"province": "北京"}, ("北京市", "北京市", None)),
        ({"address": "浙江省 杭州市 西湖区 文三路100号"}, ("浙江省", "杭州市", None)),
        ({"address": "辽宁省朝阳市双塔区"}, ("辽宁省", "朝阳市", None)),
        # a city of another province is kept as sent (profile reports the conflict)
        ({"province": "浙江", "city": "南京"}, ("浙江省", "南京市", None)),
        ({"province": "浙江", "address": "江苏省南京市鼓楼区"}, ("浙江省", None, None)),
        # a municipality is its own city; a district sent as its city becomes the district
        ({"province": "重庆", "city": "万州"}, ("重庆市", "重庆市", "万州区")),
        (
            {"province": "重庆", "city": "万州", "district": "龙都街道"},
            ("重庆市", "重庆市", "龙都街道"),
        ),
        ({"province": "北京", "city": "朝阳"}, ("北京市", "北京市", "朝阳区")),
        ({"province": "火星", "city": "奥林匹斯"}, ("火星", "奥林匹斯", None)),
    ],
)
def test_shipping_region_is_normalised(
    shipping: dict[str, str], expected: tuple[str | None, str | None, str | None]
) -> None:
    result = validate_order(order(shipping=shipping), RULES, NOW).shipping
    assert result is not None
    assert (result.province, result.city, result.district) == expected


def test_customer_address_region_is_normalised_the_same_way() -> None:
    result = validate_customer(
        {"customer_id": "c-1", "address": {"province": "重庆", "city": "万州"}}, RULES, NOW
    ).address
    assert result is not None
    assert (result.province, result.city, result.district) == ("重庆市", "重庆市", "万州区")


# --------------------------------------------------------------------------- limits, items


def test_items_per_order_and_quantities_are_limited() -> None:
    rules = Rules(max_items=3)
    assert "items:items.too_many" in codes(order(items=[{"sku": "a"}] * 4), rules=rules)
    assert "items[0].quantity:range" in codes(order(items=[{"sku": "a", "quantity": 0}]))
    assert "items[0].unit_price:money.scale" in codes(
        order(items=[{"sku": "a", "unit_price": "1.001"}])
    )
    assert ":record.not_object" in codes([1, 2])


def test_every_reason_is_reported_and_none_quotes_the_value() -> None:
    with pytest.raises(RecordRejected) as caught:
        validate_order(
            order(customer_id="秘密\x00", currency="ZZZ", total_amount="SECRET"), RULES, NOW
        )
    reasons = caught.value.reasons
    assert {r.field for r in reasons} == {"customer_id", "currency", "total_amount"}
    assert all("SECRET" not in r.message and "秘密" not in r.message for r in reasons)
    warnings: list[Any] = []
    validate_order(order(buyer={"mobile": "999-SECRET", "name": "秘密\x00"}), RULES, NOW, warnings)
    assert {w.field for w in warnings} == {"buyer.mobile", "buyer.name"}
    assert all("SECRET" not in w.message and "秘密" not in w.message for w in warnings)


# --------------------------------------------------------------------------- customers


def test_customer_normalisation() -> None:
    result = validate_customer(
        {
            "customer_id": "c-1",
            "name": "王五",
            "gender": "女",
            "mobile": "138 0013 8000",
            "mobiles": ["+8613800138000", "13900139000"],
            "emails": ["A@B.CN"],
            "birthday": "1990/05/01",
            "address": {"province": "广东", "city": "深圳"},
            "updated_at": "2026-11-01 09:00:00",
        },
        RULES,
        NOW,
    )
    assert result.gender == "female"
    assert result.mobiles == ["+8613800138000", "+8613900139000"]
    assert result.emails == ["A@b.cn"]
    assert result.birthday == "1990-05-01"
    assert result.address is not None and result.address.province == "广东省"
    assert result.updated_at == datetime(2026, 11, 1, 1, 0, tzinfo=UTC)


def test_a_customer_is_rejected_only_for_its_id_and_time() -> None:
    assert codes({"customer_id": "", "gender": "男"}, validate_customer) == {"customer_id:required"}
    assert "updated_at:time.format" in codes(
        {"customer_id": "c", "updated_at": "soon"}, validate_customer
    )


def test_bad_customer_fields_are_dropped_with_warnings() -> None:
    result, found = dropped(
        {
            "customer_id": "c-9",
            "name": "王五",
            "gender": "robot",
            "birthday": "2030-01-01",
            "qq": "12",
            "timezone": "Mars/Olympus",
            "mobiles": ["12345", "13800138000"],
            "verified": ["12345", "138****8000"],
            "attributes": {"x": "y" * 10000},
        },
        validate_customer,
    )
    assert result.name == "王五" and result.mobiles == ["+8613800138000"]
    assert result.gender is None and result.timezone is None and result.attributes == {}
    assert result.verified == ["138****8000"]
    assert found >= {
        "mobiles[0]:phone.invalid",
        "gender:gender.unknown",
        "birthday:date.range",
        "qq:qq.invalid",
        "timezone:timezone.unknown",
        "attributes:attributes.too_large",
    }


# --------------------------------------------------------------------------- interactions


def interaction(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "interaction_id": "i-1",
        "customer_id": "c-1",
        "kind": "review",
        "occurred_at": "2026-11-02T10:00:00+08:00",
        "rating": 5,
        "text": "很好",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_typed_interactions() -> None:
    assert validate_interaction(interaction(), RULES, NOW).rating == 5
    ticket = validate_interaction(
        interaction(kind="service_ticket", stage="售后", rating=None), RULES, NOW
    )
    assert ticket.stage == "after_sale"
    ret = validate_interaction(interaction(kind="return", order_id="T1", rating=None), RULES, NOW)
    assert ret.kind.value == "return"
    response = validate_interaction(
        interaction(kind="campaign_response", campaign_id="cmp-1", rating=None), RULES, NOW
    )
    assert response.campaign_id == "cmp-1"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"rating": None}, "rating:required"),
        ({"rating": 6}, "rating:range"),
        ({"kind": "service_ticket", "rating": None}, "stage:required"),
        ({"kind": "service_ticket", "stage": "never"}, "stage:stage.unknown"),
        ({"kind": "return", "rating": None}, "order_id:required"),
        ({"kind": "dispute", "rating": None}, "order_id:required"),
        ({"kind": "complaint", "rating": None, "text": None}, "text:required"),
        ({"kind": "complaint", "rating": None, "text": "x" * 5001}, "text:text.too_long"),
        ({"kind": "campaign_response", "rating": None}, "campaign_id:required"),
        ({"kind": "gossip"}, "kind:kind.unknown"),
        ({"occurred_at": None}, "occurred_at:required"),
        ({"text": "x" * 5001}, "text:text.too_long"),
    ],
)
def test_bad_interactions_are_rejected(changes: dict[str, Any], code: str) -> None:
    assert code in codes(interaction(**changes), validate_interaction)


def test_the_chinese_mobile_shortcut_agrees_with_libphonenumber() -> None:
    import random

    import phonenumbers

    from shared.phones import phone_e164

    rng = random.Random(7)
    for _ in range(3000):
        number = "1" + "".join(rng.choice("0123456789") for _ in range(10))
        try:
            parsed = phonenumbers.parse(number, "CN")
            expected = (
                phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                if phonenumbers.is_valid_number(parsed)
                else None
            )
        except phonenumbers.NumberParseException:
            expected = None
        assert phone_e164(number, "CN") == expected, number
        assert phone_e164("+86 " + number, "CN") == expected, number


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"created_at": "2026-11-01 10:00:00", "paid_at": 1793505600, "status": "交易成功"},
        {"created_at": "2026-11-01T02:00:00.125Z", "updated_at": "2026-11-02T00:00:00+00:00"},
        {"currency": "jpy", "total_amount": 1999, "refunded_amount": "100"},
        {"currency": "KWD", "total_amount": "1,299.125", "discount_amount": 0.5},
        {
            "items": [
                {"sku": "A-1", "name": " 围巾 ", "unit_price": "9.9", "quantity": "3"},
                {"name": "礼盒", "list_price": "20", "unit_price": None},
            ],
            "buyer": {"name": "张三", "mobile": "+86 138-0013-8000", "email": "Z@Example.COM"},
            "shipping": {"province": "浙江", "city": "杭州", "address": "文三路 100 号"},
            "channel": "tmall",
            "shop_id": 12345,
            "promotion": "双11",
        },
        {"shipping": {"address": "上海 浦东新区 世纪大道 1 号", "mobile": "138****8000"}},
        # dropped fields travel with the order as data_warnings (field and code only)
        {"buyer": {"mobile": "12345", "email": "nope"}, "channel": "x" * 60},
    ],
)
def test_orders_encoded_directly_are_the_model_events_byte_for_byte(
    changes: dict[str, Any],
) -> None:
    """The batch path encodes validated order data with orjson instead of building and
    serialising the models: it must produce exactly the event the models would."""
    import uuid

    from services.ingest.service import encode_order, order_data_version, order_version
    from services.ingest.validation import order_data
    from shared.events import OrderRecordedEvent, encode_event

    raw = order(**changes)
    event_id = uuid.uuid4()
    model_event = OrderRecordedEvent(
        event_id=event_id,
        occurred_at=NOW,
        source="ingest/rest",
        key=raw["customer_id"],
        data=validate_order(raw, RULES, NOW),
    )
    data = order_data(raw, RULES, NOW)
    assert encode_order(data, str(event_id), "ingest/rest", NOW) == encode_event(model_event)
    assert order_data_version(data) == order_version(model_event.data)
    if changes.get("buyer", {}).get("mobile") == "12345":
        assert [(w.field, w.code) for w in model_event.data.data_warnings] == [
            ("buyer.mobile", "phone.invalid"),
            ("buyer.email", "email.invalid"),
            ("channel", "text.too_long"),
        ]


def test_a_too_long_complaint_is_one_problem_not_two() -> None:
    found = codes(interaction(kind="complaint", rating=None, text="x" * 5001), validate_interaction)
    assert found == {"text:text.too_long"}


def test_an_integer_beyond_64_bits_in_attributes_is_rejected_whichever_parser_reads_it() -> None:
    body = b'{"interaction_id": "i", "customer_id": "c", "kind": "review", "rating": 5, '
    body += (
        b'"occurred_at": "2026-11-01T10:00:00+08:00", "attributes": {"a": 18446744073709551616}}'
    )
    result, warnings = dropped(parse_json(body), validate_interaction)
    assert warnings == {"attributes:attributes.number_range"} and result.attributes == {}


def test_an_order_sent_as_a_customer_is_rejected_not_made_its_buyer() -> None:
    nan_order = parse_json(b'{"order_id": "o-y", "customer_id": "y", "total_amount": NaN}')
    assert codes(nan_order, validate_customer) == {"order_id:customer.is_order"}
    paid = {"order_id": "o-1", "customer_id": "y", "status": "paid", "total_amount": "9.90"}
    assert codes(paid, validate_customer) == {"order_id:customer.is_order"}
    assert validate_customer({"customer_id": "y"}, RULES, NOW).customer_id == "y"
