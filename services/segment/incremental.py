"""Per-customer aggregates updated from the change of one order, without reading the others.

Pure functions on plain dicts, no I/O. A customer's stored aggregates are exactly what
:func:`services.segment.scoring.aggregate_orders` gives over all of their orders (as of
``aggregated_at``). When one order goes from an old version (or nothing) to a new one,
:func:`apply_change` updates them in place, but only where the new value follows from
the old one and the two versions alone; whenever it does not (the first or last
purchase, the window's oldest order or a channel / category might be gone, the
currency might switch, the region might come from another order, a prospect's
currency from another unpaid order) it returns ``False`` and the caller re-aggregates
that customer from all of their stored orders with ``aggregate_orders`` itself.
``tests/segment/test_incremental.py`` checks random sequences of changes against
``aggregate_orders`` step by step.

Order rows are ``services.segment.per_event.order_row`` dicts (UTC-aware datetimes):
``valid``, ``purchased_at``, ``created_at``, ``net_e4``, ``currency``, ``channel``,
``categories``, ``province``, ``city``. Aggregates use the ``AGGREGATE_COLUMNS`` keys,
with ``channels`` and ``categories`` as sets while they are being updated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

Row = dict[str, Any]


def empty_aggregate(customer_id: str) -> Row:
    """A customer without any order yet (``apply_change`` fills it from the first one)."""
    return {
        "customer_id": customer_id,
        "currency": None,
        "order_count": 0,
        "total_spent_e4": 0,
        "first_order_at": None,
        "last_order_at": None,
        "frequency": 0,
        "monetary_e4": 0,
        "window_oldest_at": None,
        "channels": set(),
        "categories": set(),
        "province": None,
        "city": None,
        "_empty": True,
    }


def from_stored(row: Row) -> Row:
    """A mutable aggregate from a stored customer row."""
    aggregate = {name: row[name] for name in _STORED}
    aggregate["channels"] = set(row["channels"] or ())
    aggregate["categories"] = set(row["categories"] or ())
    aggregate["_empty"] = False
    return aggregate


_STORED = (
    "customer_id",
    "currency",
    "order_count",
    "total_spent_e4",
    "first_order_at",
    "last_order_at",
    "frequency",
    "monetary_e4",
    "window_oldest_at",
    "province",
    "city",
)


def still_current(row: Row, now: datetime, window_start: datetime) -> bool:
    """Whether stored aggregates (as of ``aggregated_at``) are also those as of ``now``.

    The live window has no upper edge, so between ``aggregated_at`` and a later ``now``
    orders can only leave it, and none did if its oldest order is still inside.
    """
    aggregated_at = row["aggregated_at"]
    if aggregated_at is None or aggregated_at > now:
        return False
    oldest = row["window_oldest_at"]
    return oldest is None or oldest > window_start


def _region(aggregate: Row, old: Row | None, new: Row, name: str) -> bool:
    """The latest order (by creation) naming a province / city gives it."""
    before = old[name] if old is not None else None
    after = new[name]
    if isinstance(before, str):
        # the same candidate as before: the answer cannot move
        return after == before and new["created_at"] == old["created_at"]  # type: ignore[index]
    if isinstance(after, str):
        current = aggregate[name]
        if current is None or current == after:  # the only candidate, or the same answer
            aggregate[name] = after
            return True
        return False
    return True


def _channel(row: Row) -> str | None:
    channel = row["channel"]
    return channel if isinstance(channel, str) and channel else None


def _categories(row: Row) -> set[str]:
    return {c for c in row["categories"] or () if c}


def _add(aggregate: Row, new: Row, window_start: datetime) -> None:
    purchased, net = new["purchased_at"], new["net_e4"]
    same = new["currency"] == aggregate["currency"]
    aggregate["order_count"] += 1
    if same:
        aggregate["total_spent_e4"] += net
    first, last = aggregate["first_order_at"], aggregate["last_order_at"]
    aggregate["first_order_at"] = purchased if first is None or purchased < first else first
    aggregate["last_order_at"] = purchased if last is None or purchased > last else last
    if purchased > window_start:
        aggregate["frequency"] += 1
        if same:
            aggregate["monetary_e4"] += net
        oldest = aggregate["window_oldest_at"]
        if oldest is None or purchased < oldest:
            aggregate["window_oldest_at"] = purchased
    channel = _channel(new)
    if channel is not None:
        aggregate["channels"].add(channel)
    aggregate["categories"].update(_categories(new))


def apply_change(aggregate: Row, old: Row | None, new: Row, window_start: datetime) -> bool:
    """Update ``aggregate`` for one order going from ``old`` (None: unknown) to ``new``.

    ``old`` must be an order the aggregate counted (same customer), ``new`` its newest
    version. Returns ``False`` when the result needs the customer's other orders (the
    aggregate is then partly updated and must be discarded).
    """
    if not _region(aggregate, old, new, "province") or not _region(aggregate, old, new, "city"):
        return False
    if aggregate["_empty"]:
        # the first order: everything follows from it alone
        aggregate["_empty"] = False
        aggregate["currency"] = new["currency"]
        if new["valid"]:
            _add(aggregate, new, window_start)
        return True
    if aggregate["order_count"] == 0:
        return _prospect_change(aggregate, old, new, window_start)
    if old is not None and old["valid"]:
        if (
            new["valid"]
            and new["purchased_at"] == old["purchased_at"]
            and new["currency"] == old["currency"]
        ):
            # the same purchase with another status or amount: only the sums move
            if _channel(old) not in (None, _channel(new)) or not _categories(old) <= _categories(
                new
            ):
                return False
            if new["currency"] == aggregate["currency"]:
                delta = new["net_e4"] - old["net_e4"]
                aggregate["total_spent_e4"] += delta
                if new["purchased_at"] > window_start:
                    aggregate["monetary_e4"] += delta
            channel = _channel(new)
            if channel is not None:
                aggregate["channels"].add(channel)
            aggregate["categories"].update(_categories(new))
            return True
        # the old version leaves the sums
        purchased = old["purchased_at"]
        if _channel(old) is not None or _categories(old):
            return False  # another order may or may not carry the same channel / category
        if purchased == aggregate["first_order_at"] or purchased == aggregate["last_order_at"]:
            return False
        aggregate["order_count"] -= 1
        same = old["currency"] == aggregate["currency"]
        if same:
            aggregate["total_spent_e4"] -= old["net_e4"]
        if purchased > window_start:
            if purchased == aggregate["window_oldest_at"]:
                return False
            aggregate["frequency"] -= 1
            if same:
                aggregate["monetary_e4"] -= old["net_e4"]
    if new["valid"]:
        if (
            new["currency"] != aggregate["currency"]
            and new["purchased_at"] >= aggregate["last_order_at"]
        ):
            return False  # it may become the latest purchase and switch the currency
        _add(aggregate, new, window_start)
    return True


def _prospect_change(aggregate: Row, old: Row | None, new: Row, window_start: datetime) -> bool:
    """A customer with orders but no valid purchase: the currency is the latest order's."""
    if old is not None and old["valid"]:
        return False  # not a prospect after all: never happens with consistent state
    if new["valid"]:
        # the one valid purchase (``old``, if any, was not one): everything follows from it
        aggregate["currency"] = new["currency"]
        _add(aggregate, new, window_start)
        return True
    if old is None:
        # the latest order is the one before or this one: the same currency either way
        return bool(new["currency"] == aggregate["currency"])
    return bool(
        new["currency"] == old["currency"] == aggregate["currency"]
        and new["purchased_at"] == old["purchased_at"]
    )


def finished(aggregate: Row) -> Row:
    """The aggregate as stored: sorted lists instead of sets, no bookkeeping keys."""
    out = dict(aggregate)
    del out["_empty"]
    out["channels"] = sorted(aggregate["channels"])
    out["categories"] = sorted(aggregate["categories"])
    return out
