"""The transaction and interaction facets: what each order version and interaction adds
to a profile's counters, and taking an order's contribution back (pure, no I/O)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from services.profile.domain import (
    INTERACTION_COUNTERS,
    Interactions,
    OrderContribution,
    Purchase,
    Transactions,
    iso,
)
from shared.events import Interaction, Order, OrderStatus

ZERO = Decimal("0")


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def order_contribution(order: Order, timezone: str) -> OrderContribution:
    """What one order version adds to the transaction facet (pure)."""
    status = order.status
    refunded = ZERO
    if status in (OrderStatus.refunded, OrderStatus.partially_refunded):
        refunded = order.refunded_amount or (
            order.total_amount if status is OrderStatus.refunded else ZERO
        )
    purchase = None
    if order.is_valid_purchase:
        local = order.created_at.astimezone(_zone(timezone))
        units, spend = 0, ZERO
        discounted = bool(order.discount_amount) or bool(order.promotion)
        categories: set[str] = set()
        brands: set[str] = set()
        for item in order.items:
            if item.category:
                categories.add(item.category)
            if item.brand:
                brands.add(item.brand)
            if item.unit_price is not None:
                units += item.quantity
                spend += item.unit_price * item.quantity
                if item.list_price is not None and item.unit_price < item.list_price:
                    discounted = True
        purchase = Purchase(
            categories=sorted(categories),
            brands=sorted(brands),
            channel=order.channel,
            purchase_hour=local.hour,
            discounted=discounted,
            units=units,
            item_spend=str(spend),
        )
    return OrderContribution(
        status=status.value,
        currency=order.currency,
        net_amount=str(order.net_amount),
        refunded_amount=str(refunded),
        created_at=iso(order.created_at),
        purchase=purchase,
    )


def _bump(counter: dict[str, int], key: str, delta: int) -> None:
    value = counter.get(key, 0) + delta
    if value:
        counter[key] = value
    else:
        counter.pop(key, None)


def _add_money(counter: dict[str, str], currency: str, amount: str, sign: int) -> None:
    if amount in ("0", "0.00"):
        return
    total = Decimal(counter.get(currency, "0")) + sign * Decimal(amount)
    if total:
        counter[currency] = str(total)
    else:
        counter.pop(currency, None)


def apply_contribution(tx: Transactions, c: OrderContribution, sign: int) -> bool:
    """Add (+1) or take back (-1) one order's contribution. True when first/last order
    must be recomputed from all orders (a removed order was the first or the last)."""
    tx.orders_placed += sign
    status = c.status
    if status in ("refunded", "partially_refunded"):
        tx.refund_count += sign
        _add_money(tx.refunded, c.currency, c.refunded_amount, sign)
    elif status == "cancelled":
        tx.cancelled_count += sign
    elif status == "created":
        tx.unpaid_count += sign
    purchase = c.purchase
    if purchase is None:
        return False
    tx.order_count += sign
    _add_money(tx.spent, c.currency, c.net_amount, sign)
    for category in purchase.categories:
        _bump(tx.categories, category, sign)
    for brand in purchase.brands:
        _bump(tx.brands, brand, sign)
    if purchase.channel:
        _bump(tx.channels, purchase.channel, sign)
    _bump(tx.hours, str(purchase.purchase_hour), sign)
    if purchase.discounted:
        tx.discounted_orders += sign
    tx.units += sign * purchase.units
    _add_money(tx.unit_spend, c.currency, purchase.item_spend, sign)
    created = c.created_at
    if sign > 0:
        if tx.first_order_at is None or created < tx.first_order_at:
            tx.first_order_at = created
        if tx.last_order_at is None or created > tx.last_order_at:
            tx.last_order_at = created
        return False
    return created in (tx.first_order_at, tx.last_order_at)


def rebuild_transactions(contributions: list[OrderContribution]) -> Transactions:
    tx = Transactions()
    for c in contributions:
        apply_contribution(tx, c, +1)
    return tx


def main_currency(tx: Transactions) -> str | None:
    if not tx.spent:
        return None
    return max(tx.spent, key=lambda c: Decimal(tx.spent[c]))


def apply_interaction(ix: Interactions, interaction: Interaction) -> None:
    kind = interaction.kind.value
    if kind == "review":
        ix.reviews += 1
        if interaction.rating is not None:
            ix.rating_sum += interaction.rating
            ix.rated += 1
            if interaction.rating >= 4:
                ix.good_reviews += 1
            elif interaction.rating <= 2:
                ix.bad_reviews += 1
    elif kind == "service_ticket":
        ix.tickets += 1
        stage = interaction.stage or "unknown"
        ix.tickets_by_stage[stage] = ix.tickets_by_stage.get(stage, 0) + 1
    elif kind == "return":
        ix.returns += 1
    elif kind == "complaint":
        ix.complaints += 1
    elif kind == "dispute":
        ix.disputes += 1
    elif kind == "campaign_response":
        ix.campaign_responses += 1
    at = iso(interaction.occurred_at)
    if ix.last_interaction_at is None or at > ix.last_interaction_at:
        ix.last_interaction_at = at


def add_interactions(into: Interactions, other: Interactions) -> None:
    for name in INTERACTION_COUNTERS:
        setattr(into, name, getattr(into, name) + getattr(other, name))
    for stage, count in other.tickets_by_stage.items():
        into.tickets_by_stage[stage] = into.tickets_by_stage.get(stage, 0) + count
    last = other.last_interaction_at
    if last and (into.last_interaction_at is None or last > into.last_interaction_at):
        into.last_interaction_at = last


def subtract_interactions(into: Interactions, other: Interactions) -> None:
    """Take back what :func:`add_interactions` added (never below zero)."""
    for name in INTERACTION_COUNTERS:
        setattr(into, name, max(0, getattr(into, name) - getattr(other, name)))
    for stage, count in other.tickets_by_stage.items():
        left = into.tickets_by_stage.get(stage, 0) - count
        if left > 0:
            into.tickets_by_stage[stage] = left
        else:
            into.tickets_by_stage.pop(stage, None)
