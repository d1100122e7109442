"""Where a customer lives: the address of their own record or of their newest valid
purchase (paid, shipped, completed, partially refunded). An address seen only on unpaid or
cancelled orders is kept among the alternatives (``data_quality.conflicts``), never as the
value: a gift order left unpaid, a mistyped address corrected by cancelling, say nothing
about the customer. An unpaid order's address is remembered (per order, the newest
``MAX_UNPAID_ADDRESSES``) so that its paid version, which often carries no shipping of its
own, makes it the customer's address."""

from __future__ import annotations

from typing import Any

from services.profile.domain import Profile
from services.profile.facts import address_of, observe, observe_alternative
from shared.events import Order, OrderStatus

#: unpaid orders whose address is remembered until they are paid (the newest kept)
MAX_UNPAID_ADDRESSES = 20


def remember_unpaid_address(
    profile: Profile, order_id: str, address: dict[str, Any], source: str
) -> None:
    """An unpaid order's address, kept so that the order's paid version (which often
    carries no shipping of its own) makes it the customer's address."""
    unpaid = profile.unpaid_addresses
    unpaid[order_id] = {"value": address, "source": source}
    while len(unpaid) > MAX_UNPAID_ADDRESSES:
        unpaid.pop(next(iter(unpaid)))


def take_unpaid_address(profile: Profile, order_id: str) -> dict[str, Any] | None:
    """The remembered address of an order now paid (or settled otherwise), forgotten."""
    unpaid = profile.unpaid_addresses
    if not unpaid:
        return None
    found: dict[str, Any] | None = unpaid.pop(order_id, None)
    return found


def observe_order_address(profile: Profile, order: Order, source: str, seen_at: str) -> None:
    """The address of a valid purchase is the customer's (the newest wins); an unpaid or
    cancelled order's is only an alternative, until that order's paid version arrives."""
    address = address_of(order.shipping.model_dump()) if order.shipping else None
    if order.is_valid_purchase:
        remembered = take_unpaid_address(profile, order.order_id)
        if address is None and remembered is not None:
            address, source = remembered["value"], remembered["source"]
        observe(profile, "address", address, source, seen_at)
        return
    if address is None:
        return
    observe_alternative(profile, "address", address, source, seen_at)
    if order.status is OrderStatus.created:
        remember_unpaid_address(profile, order.order_id, address, source)
    else:
        take_unpaid_address(profile, order.order_id)
