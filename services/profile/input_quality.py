"""What ingest reported about a customer's orders and records: the fields it dropped (an invalid mobile,
e-mail, address part, ...) and amounts that disagree (``Order.data_warnings``, codes in
docs/ingest.md). Kept per order (its latest version's warnings; a redelivered or newer
version replaces them, so nothing is counted twice) for the newest ``MAX_ORDERS`` orders
with warnings, and summed by field and code in ``data_quality.input_warnings``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.profile.domain import Profile
from shared.events import Customer, DataWarning, Order

MAX_ORDERS = 50


def note_order(profile: Profile, order: Order) -> None:
    """Remember this order version's warnings (or that it has none any more)."""
    _note(profile, order.order_id, order.data_warnings)


def note_customer(profile: Profile, customer: Customer, source: str) -> None:
    """Remember the warnings of a source's latest customer record (keyed by the source, so a
    record sent again is counted once)."""
    _note(profile, f"customer:{source}", customer.data_warnings)


def _note(profile: Profile, key: str, warnings: list[DataWarning]) -> None:
    noted = profile.input_warnings
    noted.pop(key, None)  # re-inserted below: the newest records are kept
    if not warnings:
        return
    noted[key] = sorted({f"{w.field}|{w.code}" for w in warnings})
    while len(noted) > MAX_ORDERS:
        noted.pop(next(iter(noted)))


def summary(profile: Profile) -> list[dict[str, Any]]:
    """``[{field, code, orders}]``: how many of the customer's orders (and customer records,
    one per source) each warning names."""
    counts: Counter[str] = Counter()
    for keys in profile.input_warnings.values():
        counts.update(keys)
    return [
        {"field": key.partition("|")[0], "code": key.partition("|")[2], "orders": n}
        for key, n in sorted(counts.items())
    ]
