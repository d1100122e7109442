"""Readable names for what profile stores under short keys (exports show these)."""

from __future__ import annotations

from typing import Any

#: an order's stored contribution to the transaction facet -> the name an export shows
CONTRIBUTION_NAMES = {
    "valid": "valid_purchase",
    "status": "status",
    "cur": "currency",
    "net": "net_amount",
    "refunded": "refunded_amount",
    "created": "created_at",
    "cats": "categories",
    "brands": "brands",
    "channel": "channel",
    "hour": "purchase_hour",
    "disc": "discounted",
    "units": "units",
    "spend": "item_spend",
}


def readable_order(order: dict[str, Any]) -> dict[str, Any]:
    """An order row of the export with its contribution under readable names."""
    return {CONTRIBUTION_NAMES.get(key, key): value for key, value in order.items()}
