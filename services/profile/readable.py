"""An order as the subject-access export shows it: readable names, whatever the storage
keys (``storage.py``)."""

from __future__ import annotations

from typing import Any

from services.profile.domain import OrderRecord


def readable_order(order: OrderRecord) -> dict[str, Any]:
    """An order row of the export with its contribution to the transaction facet; the
    purchase details (categories to item_spend) only for a valid purchase."""
    c = order.contribution
    readable: dict[str, Any] = {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "version": order.version,
        "valid_purchase": c.valid_purchase,
        "status": c.status,
        "currency": c.currency,
        "net_amount": c.net_amount,
        "refunded_amount": c.refunded_amount,
        "created_at": c.created_at,
    }
    purchase = c.purchase
    if purchase is not None:
        readable.update(
            categories=purchase.categories,
            brands=purchase.brands,
            channel=purchase.channel,
            purchase_hour=purchase.purchase_hour,
            discounted=purchase.discounted,
            units=purchase.units,
            item_spend=purchase.item_spend,
        )
    return readable
