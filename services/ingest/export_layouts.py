"""The order exports shops actually have, recognised by their headers.

Each :class:`Layout` maps a platform's export headers to our import columns
(``import_rows.OUR_COLUMNS``), names the channel and default currency, and fixes up what the
platform writes its own way (statuses, refunds, cancellations). Every layout writes one
row per line item with the order's fields repeated (or left blank) on the order's other
rows; ``imports`` groups consecutive rows of one order id into one order.

The headers are the ones the platforms' seller back-ends write (and public import tools
and integrations read): Taobao / Tmall 订单报表 and its 宝贝 details file (宝贝报表, joined
by 订单编号, see ``import_rows.ItemDetails``), JD 京东商家后台 订单导出, Shopify Orders → Export,
Pinduoduo 拼多多商家后台 订单导出 (no buyer id: the customer is the consignee's mobile).
Youzan's export was not documented where we could read it: it goes through ``mapping``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from services.ingest.reference import CHINESE_ORDER_STATUSES
from shared.phones import phone_e164


@dataclass(frozen=True)
class Layout:
    """One platform's export: its headers -> our columns, and what it means by them."""

    name: str
    columns: dict[str, str]
    #: headers that only this layout has (any one of them identifies it)
    signature: frozenset[str]
    channel: str | None = None
    currency: str | None = None
    #: the platform's status words -> ours (others are passed on as they are)
    statuses: dict[str, str] = field(default_factory=dict)
    #: headers read for ``fix`` only (not order fields)
    extra: tuple[str, ...] = ()
    fix: Callable[[dict[str, Any], dict[str, str]], None] | None = None


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value).replace(",", "")) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _refund_status(order: dict[str, Any]) -> None:
    """A refund > 0 on a paid order makes it refunded (whole amount) or partially refunded."""
    status = order.get("status")
    refund = _decimal(order.get("refunded_amount"))
    total = _decimal(order.get("total_amount"))
    if refund and refund > 0 and status in ("paid", "shipped", "completed", "cancelled"):
        full = total is not None and refund >= total
        order["status"] = "refunded" if full else "partially_refunded"
        if total is not None and refund > total:
            # the platform reports the refund of the whole order; paid amount is what's left
            order["refunded_amount"] = order["total_amount"]


def _fix_taobao(order: dict[str, Any], extra: dict[str, str]) -> None:
    shipping = order.get("shipping") or {}
    if shipping.get("recipient"):
        order.setdefault("buyer", {}).setdefault("name", shipping["recipient"])
    mobile = (order.get("buyer") or {}).get("mobile")
    if mobile and shipping:
        shipping.setdefault("mobile", mobile)
    _refund_status(order)


def _fix_jd(order: dict[str, Any], extra: dict[str, str]) -> None:
    shipping = order.get("shipping") or {}
    if shipping.get("recipient"):
        order.setdefault("buyer", {}).setdefault("name", shipping["recipient"])
    _refund_status(order)


def _shopify_phone_id(order: dict[str, Any], extra: dict[str, str]) -> str | None:
    """The customer's phone in E.164, from the order's Phone, else Billing Phone, else
    Shipping Phone (a number without + is read in the Billing, else Shipping Country)."""
    shipping_phone = (order.get("shipping") or {}).get("mobile") or ""
    country = (extra.get("Billing Country") or extra.get("Shipping Country") or "").upper()
    region = country if len(country) == 2 and country.isalpha() else "ZZ"
    for phone in (extra.get("Phone"), extra.get("Billing Phone"), shipping_phone):
        number = phone_e164(phone, region) if phone else None
        if number is not None:
            return number
    return None


def _fix_shopify(order: dict[str, Any], extra: dict[str, str]) -> None:
    email = order.get("customer_id")
    if email:
        order.setdefault("buyer", {}).setdefault("email", email)
    else:
        # no e-mail (a phone or POS order): the customer is their phone, so the order is
        # not lost over a contact field; without either it has no customer (rejected)
        phone = _shopify_phone_id(order, extra)
        if phone is not None:
            order["customer_id"] = phone
            order.setdefault("buyer", {}).setdefault("mobile", phone)
    if extra.get("Cancelled at"):
        order["status"] = "cancelled"
        order.setdefault("updated_at", extra["Cancelled at"])
    if order.get("status") == "partially_refunded" and not _decimal(order.get("refunded_amount")):
        order["status"] = "paid"  # no amount given: counted as paid, not guessed


def _fix_pinduoduo(order: dict[str, Any], extra: dict[str, str]) -> None:
    """Pinduoduo exports carry no buyer id: the customer is the consignee's mobile (手机) in
    E.164; a masked or invalid mobile is no identity, so the order has no customer."""
    mobile = phone_e164(str(order.pop("customer_id", "") or ""), "CN")
    if mobile is not None:
        order["customer_id"] = mobile
        order.setdefault("buyer", {}).setdefault("mobile", mobile)
    shipping = order.get("shipping") or {}
    if shipping.get("recipient"):
        order.setdefault("buyer", {}).setdefault("name", shipping["recipient"])
    if mobile is not None and shipping:
        shipping.setdefault("mobile", mobile)
    if order.get("created_at"):  # 支付时间: the export has no separate creation time
        order.setdefault("paid_at", order["created_at"])
    discounts = [_decimal(extra.get(h)) for h in ("店铺优惠折扣(元)", "平台优惠折扣(元)")]
    discount = sum((d for d in discounts if d is not None), Decimal(0))
    if discount > 0:
        order.setdefault("discount_amount", str(discount))
    items = order.get("items") or []
    gross = _decimal(extra.get("商品总价(元)"))
    quantity = _decimal(items[0].get("quantity")) if len(items) == 1 else None
    if gross is not None and quantity is not None and quantity > 0:
        items[0].setdefault("unit_price", str((gross / quantity).quantize(Decimal("0.01"))))


TAOBAO = Layout(
    "taobao",
    columns={
        "订单编号": "order_id",
        "买家会员名": "customer_id",
        "买家实际支付金额": "total_amount",
        "订单状态": "status",
        "订单创建时间": "created_at",
        "订单付款时间": "paid_at",
        "收货人姓名": "recipient",
        "收货地址": "address",
        "联系手机": "buyer_mobile",
        "宝贝标题": "item_name",
        "宝贝总数量": "item_quantity",
        "退款金额": "refunded_amount",
        "店铺名称": "shop_id",
        "商家编码": "item_sku",
        "买家邮箱": "buyer_email",
        "邮编": "postal_code",
    },
    signature=frozenset({"订单编号", "买家会员名", "买家实际支付金额", "宝贝标题"}),
    channel="taobao",
    currency="CNY",
    statuses=CHINESE_ORDER_STATUSES,
    fix=_fix_taobao,
)

JD = Layout(
    "jd",
    columns={
        "订单号": "order_id",
        "下单帐号": "customer_id",
        "应付金额": "total_amount",
        "订单状态": "status",
        "下单时间": "created_at",
        "付款确认时间": "paid_at",
        "订单完成时间": "updated_at",
        "客户姓名": "recipient",
        "客户地址": "address",
        "联系电话": "buyer_mobile",
        "商品ID": "item_sku",
        "商品名称": "item_name",
        "订购数量": "item_quantity",
        "京东价": "item_unit_price",
    },
    signature=frozenset({"下单帐号", "京东价", "订购数量"}),
    channel="jd",
    currency="CNY",
    statuses={
        "等待付款": "created",
        "等待出库": "paid",
        "等待发货": "paid",
        "等待确认收货": "shipped",
        "完成": "completed",
        "已完成": "completed",
        "已取消": "cancelled",
        "取消": "cancelled",
        "锁定": "paid",
    },
    fix=_fix_jd,
)

SHOPIFY = Layout(
    "shopify",
    columns={
        "Name": "order_id",
        "Email": "customer_id",
        "Financial Status": "status",
        "Paid at": "paid_at",
        "Created at": "created_at",
        "Currency": "currency",
        "Total": "total_amount",
        "Discount Amount": "discount_amount",
        "Refunded Amount": "refunded_amount",
        "Discount Code": "promotion",
        "Lineitem quantity": "item_quantity",
        "Lineitem name": "item_name",
        "Lineitem price": "item_unit_price",
        "Lineitem sku": "item_sku",
        "Vendor": "item_brand",
        "Billing Name": "buyer_name",
        "Shipping Name": "recipient",
        "Shipping Address1": "address",
        "Shipping City": "city",
        "Shipping Province": "province",
        "Shipping Zip": "postal_code",
        "Shipping Phone": "shipping_mobile",
    },
    signature=frozenset({"Financial Status", "Lineitem quantity", "Lineitem name"}),
    channel="shopify",
    statuses={
        "pending": "created",
        "authorized": "created",
        "partially_paid": "paid",
        "paid": "paid",
        "partially_refunded": "partially_refunded",
        "refunded": "refunded",
        "voided": "cancelled",
    },
    extra=("Cancelled at", "Phone", "Billing Phone", "Billing Country", "Shipping Country"),
    fix=_fix_shopify,
)

PINDUODUO = Layout(
    "pinduoduo",
    columns={
        "订单号": "order_id",
        "手机": "customer_id",
        "用户实付金额(元)": "total_amount",
        "订单状态": "status",
        "支付时间": "created_at",
        "商品": "item_name",
        "商品id": "item_sku",
        "商品数量(件)": "item_quantity",
        "收货人": "recipient",
        "省": "province",
        "市": "city",
        "区": "district",
        "详细地址": "address",
    },
    signature=frozenset({"商品总价(元)", "用户实付金额(元)", "商品id"}),
    channel="pinduoduo",
    currency="CNY",
    statuses={
        "待支付": "created",
        "待付款": "created",
        "待发货": "paid",
        "已发货，待签收": "shipped",
        "已发货,待签收": "shipped",
        "已签收": "completed",
        "已取消": "cancelled",
        "未发货，退款成功": "refunded",
        "未发货,退款成功": "refunded",
        "已发货，退款成功": "refunded",
        "已发货,退款成功": "refunded",
        "已签收，退款成功": "refunded",
        "已签收,退款成功": "refunded",
    },
    extra=("商品总价(元)", "店铺优惠折扣(元)", "平台优惠折扣(元)"),
    fix=_fix_pinduoduo,
)

LAYOUTS: tuple[Layout, ...] = (TAOBAO, JD, SHOPIFY, PINDUODUO)


def detect(headers: list[str]) -> Layout | None:
    """The layout whose signature headers the file has (most of them), if any."""
    names = set(headers)
    best, hits = None, 0
    for layout in LAYOUTS:
        found = len(layout.signature & names)
        if found > hits:
            best, hits = layout, found
    return best


#: Taobao's 宝贝 details export (宝贝报表): one row per item, joined to the orders by 订单编号
TAOBAO_DETAIL_COLUMNS: dict[str, str] = {
    "订单编号": "order_id",
    "标题": "name",
    "价格": "unit_price",
    "购买数量": "quantity",
    "外部系统编号": "sku",
    "商家编码": "sku",
    "商品属性": "category",
}
