"""Validation and normalisation of orders, customers and interactions.

One set of rules for every way in (REST, raw Kafka topics, CSV import): each
``validate_*`` function takes the bare JSON object an outside system sent and
returns the canonical payload of ``shared.events``, or raises
:class:`RecordRejected` with every reason found (field, stable code, message).
Messages never quote the offending value: they end up in logs, dead letters and
import reports, and the value may be personal data.

The rules (also in the OpenAPI descriptions, see :data:`RULES`):
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import ValidationError

from services.ingest import reference
from services.ingest.field_checks import (
    NAME_MAX,
    QUANTUM,
    FieldChecker,
    Reason,
    RecordRejected,
    Rules,
)
from shared.events import (
    Customer,
    Interaction,
    InteractionKind,
    Order,
    OrderStatus,
)
from shared.vocabulary import normalize_channel, normalize_gender

RULES = {
    "money": (
        "Money is a decimal string (a JSON number is accepted and read by its shortest "
        "representation). It must be finite (NaN and infinities are rejected), not negative, at "
        "most `max_amount` (default 100,000,000) and have no more decimals than the currency's "
        "ISO 4217 minor units (CNY 2, JPY 0, KWD 3); it is written with exactly that many decimals "
        "(`199` -> `199.00`). Thousands separators (`1,299.00`) and full-width digits are accepted."
    ),
    "currency": (
        "ISO 4217 code, case-insensitive (`cny` -> `CNY`); RMB, ¥, ￥ and 人民币 mean CNY. "
        "Unknown codes are rejected."
    ),
    "timestamp": (
        "ISO 8601 (`2026-11-01T10:00:00+08:00`, `2026-11-01 10:00:00`, `2026/11/01 10:00`) or "
        "epoch seconds/milliseconds (a JSON number, or 10 / 13 digits as text, as in CSV "
        "exports). A timestamp without an offset is read in the shop timezone "
        "setting (`INGEST_SHOP_TIMEZONE`, default Asia/Shanghai). More than `max_future_seconds` "
        "(default 1 h) in the future, or before `min_year` (default 1970), is rejected. "
        "`paid_at` and `updated_at` may not precede `created_at`."
    ),
    "status": (
        "One of created, paid, shipped, completed, cancelled, refunded, partially_refunded "
        "(case-insensitive); the shop platform's Chinese statuses are mapped (等待买家付款 -> "
        "created, 买家已付款，等待卖家发货 -> paid, 卖家已发货，等待买家确认 -> shipped, 交易成功 -> "
        "completed, 交易关闭 -> cancelled, 退款成功 -> refunded)."
    ),
    "mobile": (
        "Parsed with libphonenumber and written in E.164 (`+8613800138000`). Numbers without "
        "+country are read in the default region (CN). Full-width digits, spaces, dashes, "
        "brackets and a leading apostrophe (spreadsheet exports) are accepted. An invalid number "
        "is rejected; a masked number (`138****8000`) is dropped (null)."
    ),
    "text": (
        "Every string is Unicode NFC-normalised and trimmed. NUL bytes, lone surrogates and "
        "other control characters (except tab and newline) are rejected; ids (order, customer, "
        "interaction, shop, sku, campaign) also may not hold invisible or bidirectional format "
        "characters (Unicode Cf: U+202E, U+200B, ...). Limits: ids 128 "
        "characters, names 100, addresses 500, other short fields 200, free text `max_text_length`"
        " (default 5,000)."
    ),
    "attributes": (
        "Free-form JSON kept as sent (at most `max_attributes_bytes`, default 8 KiB, nested at "
        "most 32 levels); NUL bytes or lone surrogates in keys or text, NaN / infinities and "
        "numbers beyond ±2^63 are rejected rather than altered; other numbers are IEEE doubles "
        "(about 16 significant digits)."
    ),
    "json": (
        "Bodies and raw records are UTF-8 JSON; a leading byte order mark is skipped. JSON nested "
        "deeper than 1,024 levels is not accepted (422 malformed-json; record.not_json)."
    ),
    "region": (
        "Province and city are normalised to their full names (浙江 -> 浙江省, 广西 -> "
        "广西壮族自治区, 杭州 -> 杭州市; `shared.regions`); a missing province is inferred from a "
        "known city, and both are read from the start of the address when absent (`浙江省 "
        "杭州市 西湖区 ...`). A municipality (北京, 上海, 天津, 重庆) is its own city: a district "
        "sent as its city becomes the district (重庆 + 万州 -> 重庆市 / 重庆市 / 万州区) unless the "
        "record has one. A city of another province (浙江 + 南京) is kept as sent, and nothing "
        "is inferred from it. Unknown names are kept as sent."
    ),
    "limits": (
        "At most `max_items_per_order` (default 500) items per order and quantities 1.."
        "`max_item_quantity`; unknown fields are ignored. Bodies over the size limit are answered "
        "413; a batch over `max_batch_size` (default 5,000) records is answered 413."
    ),
    "warnings": (
        "Only the fields that define a record reject it: an order's id, customer, status, "
        "currency, amounts (total, refunded, discount, item prices and quantities) and times; a "
        "customer's id and updated_at; an interaction's id, customer, kind, time and the fields "
        "its kind requires. A problem in any other field (mobile, e-mail, QQ, name, address part, "
        "channel, shop, promotion, item description, gender, birthday, attributes, ...) drops "
        "that field (it is never guessed) and the record is accepted with a warning "
        "`{field, code, message}` (the same codes as rejections)."
    ),
    "order_versions": (
        "Versions of one order are ordered by `updated_at` (else `paid_at`, else `created_at`), "
        "then by status (created < paid < shipped < completed < partially_refunded < cancelled < "
        "refunded). The same version again is a duplicate (the first one wins, even if other "
        "fields differ). A newer version becomes a new canonical event on crm.orders.v1. An "
        "older version arriving late is stored (`current: false`) but not published, so it never "
        "overwrites the current state downstream."
    ),
}

__doc__ = (__doc__ or "") + "".join(f"\n- {name}: {text}" for name, text in RULES.items())


def parse_json(raw: bytes) -> Any:
    """Parse JSON text. Falls back to the standard parser so that a lone surrogate escape
    reaches validation (which rejects that record with a clear reason) instead of failing
    the whole body; raises ``ValueError`` (incl. ``UnicodeDecodeError``) if not JSON."""
    if raw[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte order mark (RFC 8259 lets parsers skip it)
        raw = raw[3:]
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        # orjson stops at 1,024 levels; so do we, with the same clear answer
        raise ValueError("the JSON is nested too deeply") from None


_STATUS = {s.value: s for s in OrderStatus}
_STATUS.update({k: OrderStatus(v) for k, v in reference.CHINESE_ORDER_STATUSES.items()})
_KINDS = {k.value: k for k in InteractionKind}
_KINDS.update(
    {
        "return_request": InteractionKind.return_request,
        "ticket": InteractionKind.service_ticket,
        "评价": InteractionKind.review,
        "退货": InteractionKind.return_request,
        "投诉": InteractionKind.complaint,
        "纠纷": InteractionKind.dispute,
    }
)
_STAGES = {
    "pre_sale": "pre_sale",
    "in_sale": "in_sale",
    "after_sale": "after_sale",
    "售前": "pre_sale",
    "售中": "in_sale",
    "售后": "after_sale",
}


def _object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordRejected([Reason("", "record.not_object", f"{what} must be a JSON object")])
    return raw


def _build(model: Any, data: dict[str, Any]) -> Any:  # returns an instance of ``model``
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # a rule above let something through: still a rejection
        raise RecordRejected(
            [
                Reason(".".join(str(p) for p in err["loc"]), "invalid", str(err["msg"]))
                for err in exc.errors()
            ]
        ) from exc


def validate_order(
    raw: Any, rules: Rules, now: datetime | None = None, warnings: list[Reason] | None = None
) -> Order:
    """The canonical order for a bare order object, or :class:`RecordRejected`; the fields
    dropped from it are appended to ``warnings`` (if given)."""
    return _build(Order, order_data(raw, rules, now, warnings))


def order_data(
    raw: Any, rules: Rules, now: datetime | None = None, warnings: list[Reason] | None = None
) -> dict[str, Any]:
    """The canonical order as plain data (the :class:`Order` fields, in their order, with
    ``Decimal``/``datetime``/``OrderStatus`` values), or :class:`RecordRejected`. A problem
    in a descriptive field drops the field and is appended to ``warnings`` (if given).

    What :func:`validate_order` builds its model from; the batch path encodes this directly
    (``service.encode_order``) instead of building and serialising the model: a test proves
    both give the same event."""
    raw = _object(raw, "an order")
    c = FieldChecker(rules, now)
    order_id = c.ident(raw.get("order_id"), "order_id")
    customer_id = c.ident(raw.get("customer_id"), "customer_id")
    status = _status(c, raw.get("status"))
    currency, digits = c.currency(raw.get("currency"))
    created_at = c.timestamp(raw.get("created_at"), "created_at", required=True)
    paid_at = c.timestamp(raw.get("paid_at"), "paid_at")
    updated_at = c.timestamp(raw.get("updated_at"), "updated_at")
    if created_at is not None:
        for name, moment in (("paid_at", paid_at), ("updated_at", updated_at)):
            if moment is not None and moment < created_at:
                c.fail(name, "time.before_created", "precedes created_at")
    money_digits = 2 if digits is None else digits
    total = c.money(raw.get("total_amount"), "total_amount", money_digits, required=True)
    refunded = c.money(raw.get("refunded_amount"), "refunded_amount", money_digits)
    discount = c.money(raw.get("discount_amount"), "discount_amount", money_digits)
    if total is not None and refunded is not None and refunded > total:
        c.fail("refunded_amount", "money.refund_exceeds_total", "exceeds total_amount")
    items = _items(c, raw.get("items"), money_digits)
    if total is not None and not c.reasons:
        _check_amounts_agree(c, total, discount, items)
    with c.lenient():
        buyer = _buyer(c, raw.get("buyer"))
        shipping = c.address(raw.get("shipping"), "shipping")
        channel = normalize_channel(c.text(raw.get("channel"), "channel", 50))
        shop_id = c.ident(raw.get("shop_id"), "shop_id", required=False)
        promotion = c.text(raw.get("promotion"), "promotion")
    c.done()
    if warnings is not None:
        warnings.extend(c.warnings)
    zero = QUANTUM[money_digits] * 0
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": status,
        "created_at": created_at,
        "paid_at": paid_at,
        "updated_at": updated_at,
        "currency": currency,
        "total_amount": total,
        "refunded_amount": zero if refunded is None else refunded,
        "discount_amount": zero if discount is None else discount,
        "channel": channel,
        "shop_id": shop_id,
        "promotion": promotion,
        "items": items,
        "buyer": buyer,
        "shipping": shipping,
        "data_warnings": [{"field": w.field, "code": w.code} for w in c.warnings],
    }


#: items whose prices add up to more than this many times the order's gross amount are not
#: a plausible order (a unit price in cents, a quantity in grams): rejected
ITEMS_FAR_FACTOR = 100
#: how far (share of the items less the discount, plus one unit) a total may fall below
#: the items (rounding of per-item discounts) or lie above them (shipping fees, taxes)
#: before the disagreement is reported
ITEMS_MISMATCH_SHARE = Decimal("0.05")
ITEMS_ABOVE_SHARE = Decimal("0.5")


def _check_amounts_agree(
    c: FieldChecker, total: Decimal, discount: Decimal | None, items: list[dict[str, Any]]
) -> None:
    """Amounts that contradict each other: a discount beyond the priced items (rejected),
    items far from the total (rejected), a total more than 5 % below the items less the
    discount or more than 50 % above them (a warning)."""
    if not items or any(i["unit_price"] is None for i in items):
        return
    items_sum = sum((i["unit_price"] * i["quantity"] for i in items), Decimal(0))
    discount = discount or Decimal(0)
    if discount > items_sum:
        c.fail("discount_amount", "money.discount_exceeds_items", "exceeds the items' total")
        return
    gross = total + discount
    if items_sum > ITEMS_FAR_FACTOR * max(gross, Decimal(1)):
        c.fail("items", "money.items_far_from_total", "add up to far more than the order total")
        return
    expected = items_sum - discount
    # a total above the items is common (shipping fees, taxes): only far above is reported
    below = expected - total > ITEMS_MISMATCH_SHARE * expected + 1
    above = total - expected > ITEMS_ABOVE_SHARE * expected + 1
    if below or above:
        c.warnings.append(
            Reason(
                "total_amount",
                "money.items_mismatch",
                "differs from the items' prices less the discount (kept as sent)",
            )
        )


def _status(c: FieldChecker, value: Any) -> OrderStatus | None:
    text = c.text(value, "status", 40, required=True)
    if text is None:
        return None
    status = _STATUS.get(text.lower()) or _STATUS.get(text.replace(" ", ""))
    if status is None:
        c.fail("status", "status.unknown", "is not a known order status")
    return status


def _items(c: FieldChecker, value: Any, digits: int) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.fail("items", "type", "must be a list")
        return []
    if len(value) > c.rules.max_items:
        c.fail("items", "items.too_many", f"has more than {c.rules.max_items} items")
        return []
    items = []
    for index, raw in enumerate(value):
        where = f"items[{index}]"
        item = c.mapping(raw, where)
        if item is None:
            if raw is None:
                c.fail(where, "type", "must be an object")
            continue
        quantity = c.integer(item.get("quantity"), f"{where}.quantity", 1, c.rules.max_quantity)
        unit_price = c.money(item.get("unit_price"), f"{where}.unit_price", digits)
        with c.lenient():
            items.append(
                {
                    "sku": c.ident(item.get("sku"), f"{where}.sku", required=False),
                    "name": c.text(item.get("name"), f"{where}.name"),
                    "category": c.text(item.get("category"), f"{where}.category", 100),
                    "brand": c.text(item.get("brand"), f"{where}.brand", 100),
                    "unit_price": unit_price,
                    "quantity": 1 if quantity is None else quantity,
                    "list_price": c.money(item.get("list_price"), f"{where}.list_price", digits),
                }
            )
    return items


def _buyer(c: FieldChecker, value: Any) -> dict[str, Any] | None:
    raw = c.mapping(value, "buyer")
    if raw is None:
        return None
    return {
        "name": c.text(raw.get("name"), "buyer.name", NAME_MAX),
        "mobile": c.mobile(raw.get("mobile"), "buyer.mobile"),
        "email": c.email(raw.get("email"), "buyer.email"),
        "phone": c.mobile(raw.get("phone"), "buyer.phone"),
        "wechat": c.text(raw.get("wechat"), "buyer.wechat", 100),
        "qq": c.qq(raw.get("qq"), "buyer.qq"),
    }


def validate_customer(
    raw: Any, rules: Rules, now: datetime | None = None, warnings: list[Reason] | None = None
) -> Customer:
    """The canonical customer record for a bare customer object, or :class:`RecordRejected`.
    Only its id and ``updated_at`` define it: a problem in any other field drops that field
    and is appended to ``warnings`` (if given)."""
    raw = _object(raw, "a customer")
    c = FieldChecker(rules, now)
    customer_id = c.ident(raw.get("customer_id"), "customer_id")
    updated_at = c.timestamp(raw.get("updated_at"), "updated_at")
    if "order_id" in raw:  # an order sent as a customer would become its buyer, amounts lost
        c.fail("order_id", "customer.is_order", "an order, not a customer (it has an order_id)")
    with c.lenient():
        data = _customer_fields(c, raw)
    c.done()
    if warnings is not None:
        warnings.extend(c.warnings)
    dropped = [{"field": w.field, "code": w.code} for w in c.warnings]
    return _build(
        Customer,
        {"customer_id": customer_id, **data, "updated_at": updated_at, "data_warnings": dropped},
    )


def _customer_fields(c: FieldChecker, raw: dict[str, Any]) -> dict[str, Any]:
    gender_text = c.text(raw.get("gender"), "gender", 20)
    gender = None
    if gender_text is not None:
        gender = normalize_gender(gender_text)
        if gender is None:
            c.fail("gender", "gender.unknown", "is not male, female or unknown")
    birthday = _birthday(c, raw.get("birthday"))
    mobiles = _contact_list(c, raw, "mobiles", "mobile", c.mobile)
    phones = _contact_list(c, raw, "phones", "phone", c.mobile)
    emails = _contact_list(c, raw, "emails", "email", c.email)
    timezone = c.text(raw.get("timezone"), "timezone", 64)
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            c.fail("timezone", "timezone.unknown", "is not an IANA time zone")
            timezone = None
    verified_raw = raw.get("verified") or []
    verified: list[str] = []
    if not isinstance(verified_raw, list):
        c.fail("verified", "type", "must be a list")
    else:
        for index, item in enumerate(verified_raw[:20]):
            text = c.text(item, f"verified[{index}]", 254)
            if text is None:
                continue
            problems = len(c.warnings)
            check = c.email if "@" in text else c.mobile
            value = check(text, f"verified[{index}]")
            if value is not None:
                verified.append(value)
            elif len(c.warnings) == problems:
                verified.append(text)  # masked: kept as the platform sent it
    return {
        "name": c.text(raw.get("name"), "name", NAME_MAX),
        "gender": gender,
        "birthday": birthday,
        "mobiles": mobiles,
        "phones": phones,
        "emails": emails,
        "wechat": c.text(raw.get("wechat"), "wechat", 100),
        "qq": c.qq(raw.get("qq"), "qq"),
        "company": c.text(raw.get("company"), "company"),
        "title": c.text(raw.get("title"), "title", NAME_MAX),
        "industry": c.text(raw.get("industry"), "industry", NAME_MAX),
        "address": c.address(raw.get("address"), "address"),
        "timezone": timezone,
        "source": c.text(raw.get("source"), "source", 50),
        "verified": verified,
        "attributes": c.attributes(raw.get("attributes")),
    }


def _birthday(c: FieldChecker, value: Any) -> str | None:
    text = c.text(value, "birthday", 20)
    if text is None:
        return None
    try:
        day = date.fromisoformat(text.replace("/", "-"))
    except ValueError:
        c.fail("birthday", "date.format", "is not a date (YYYY-MM-DD)")
        return None
    if day > c.now.date() or day.year < 1900:
        c.fail("birthday", "date.range", "is not a plausible birthday")
        return None
    return day.isoformat()


def _contact_list(
    c: FieldChecker, raw: dict[str, Any], plural: str, singular: str, check: Any
) -> list[str]:
    values = raw.get(plural)
    if values is None:
        values = []
    elif not isinstance(values, list):
        c.fail(plural, "type", "must be a list")
        return []
    if raw.get(singular) is not None:
        values = [raw[singular], *values]
    if len(values) > 20:
        c.fail(plural, "range", "has more than 20 entries")
        return []
    found: list[str] = []
    for index, value in enumerate(values):
        result = check(value, f"{plural}[{index}]")
        if result is not None and result not in found:
            found.append(result)
    return found


#: What each interaction kind requires beyond id, customer, kind and time.
INTERACTION_REQUIREMENTS = {
    InteractionKind.review: "rating 1..5 (text optional)",
    InteractionKind.service_ticket: "stage: pre_sale | in_sale | after_sale (售前/售中/售后)",
    InteractionKind.return_request: "order_id",
    InteractionKind.complaint: "text or status",
    InteractionKind.dispute: "order_id",
    InteractionKind.campaign_response: "campaign_id",
}


def validate_interaction(
    raw: Any, rules: Rules, now: datetime | None = None, warnings: list[Reason] | None = None
) -> Interaction:
    """The canonical interaction for a bare interaction object, or :class:`RecordRejected`;
    a bad ``channel`` or ``attributes`` is dropped and appended to ``warnings`` (if given)."""
    raw = _object(raw, "an interaction")
    c = FieldChecker(rules, now)
    kind_text = c.text(raw.get("kind"), "kind", 40, required=True)
    kind = None
    if kind_text is not None:
        kind = _KINDS.get(kind_text.lower())
        if kind is None:
            c.fail("kind", "kind.unknown", "is not a known interaction kind")
    rating = c.integer(raw.get("rating"), "rating", 1, 5)
    text = c.text(raw.get("text"), "text", rules.max_text)
    stage_text = c.text(raw.get("stage"), "stage", 20)
    stage = None
    if stage_text is not None:
        stage = _STAGES.get(stage_text.lower())
        if stage is None:
            c.fail("stage", "stage.unknown", "is not pre_sale, in_sale or after_sale")
    order_id = c.ident(raw.get("order_id"), "order_id", required=False)
    status = c.text(raw.get("status"), "status", 40)
    campaign_id = c.ident(raw.get("campaign_id"), "campaign_id", required=False)
    if kind is InteractionKind.review and rating is None and "rating" not in _fields(c):
        c.fail("rating", "required", "is required for a review")
    elif kind is InteractionKind.service_ticket and stage is None and "stage" not in _fields(c):
        c.fail("stage", "required", "is required for a service ticket")
    elif kind in (InteractionKind.return_request, InteractionKind.dispute) and not order_id:
        c.fail("order_id", "required", f"is required for a {kind.value}")
    elif (
        kind is InteractionKind.complaint
        and not (text or status)
        and not {"text", "status"} & _fields(c)
    ):
        c.fail("text", "required", "a complaint needs text or a status")
    elif kind is InteractionKind.campaign_response and not campaign_id:
        c.fail("campaign_id", "required", "is required for a campaign response")
    data: dict[str, Any] = {
        "interaction_id": c.ident(raw.get("interaction_id"), "interaction_id"),
        "customer_id": c.ident(raw.get("customer_id"), "customer_id"),
        "kind": kind,
        "occurred_at": c.timestamp(raw.get("occurred_at"), "occurred_at", required=True),
        "order_id": order_id,
        "rating": rating,
        "text": text,
        "stage": stage,
        "status": status,
        "campaign_id": campaign_id,
    }
    with c.lenient():
        data["channel"] = normalize_channel(c.text(raw.get("channel"), "channel", 50))
        data["attributes"] = c.attributes(raw.get("attributes"))
    c.done()
    if warnings is not None:
        warnings.extend(c.warnings)
    return _build(Interaction, data)


def _fields(c: FieldChecker) -> set[str]:
    return {r.field for r in c.reasons}
