"""The incremental aggregates equal ``aggregate_orders`` over all orders, after every change."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from services.segment import incremental, scoring
from services.segment.policy import DEFAULT_POLICY
from services.segment.repository import ORDER_FRAME_COLUMNS
from tests.segment.helpers import NOW

WINDOW_START = NOW - timedelta(days=DEFAULT_POLICY.window_days)


def reference(orders: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``aggregate_orders`` over these order rows, per customer, as plain dicts."""
    if not orders:
        return {}
    frame = pd.DataFrame(orders)[ORDER_FRAME_COLUMNS]
    frame["purchased_at"] = pd.to_datetime(frame["purchased_at"], utc=True)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["categories"] = frame["categories"].map(tuple)
    rows = scoring.plain_rows(scoring.aggregate_orders(frame, NOW, DEFAULT_POLICY))
    for row in rows:
        row["channels"], row["categories"] = list(row["channels"]), list(row["categories"])
    return {row["customer_id"]: row for row in rows}


def random_version(rng: random.Random, order_id: str, customer: str, old: dict | None) -> dict:
    """A new version of an order: often only its status / refund moves (same purchase)."""
    if old is not None and rng.random() < 0.5:
        row = dict(old, customer_id=customer)
    else:
        purchased = NOW - timedelta(days=rng.choice([1, 5, 30, 200, 364, 366, 400, 700]))
        purchased += timedelta(minutes=rng.randint(0, 3))  # ties on purchase time too
        row = {
            "order_id": order_id,
            "customer_id": customer,
            "purchased_at": purchased,
            "created_at": purchased - timedelta(minutes=rng.choice([0, 1, 2])),
            "currency": rng.choice(["CNY", "CNY", "CNY", "USD"]),
            "channel": rng.choice([None, "", "tmall", "tmall", "jd"]),
            "categories": sorted(rng.sample(["shoes", "bags", "hats"], rng.randint(0, 2))),
            "province": rng.choice([None, "", "浙江省", "浙江省", "广东省"]),
            "city": rng.choice([None, "杭州市", "杭州市", "广州市"]),
        }
    row["valid"] = rng.random() < 0.7
    row["net_e4"] = rng.randint(0, 5) * 10_000 if row["valid"] else 0
    return row


@pytest.mark.parametrize("seed", range(12))
def test_every_change_gives_what_aggregate_orders_gives(seed: int) -> None:
    rng = random.Random(seed)
    orders: dict[str, dict[str, Any]] = {}
    #: the aggregates kept incrementally, customer -> mutable aggregate
    kept: dict[str, dict[str, Any]] = {}
    applied = recomputed = 0
    for step in range(150):
        order_id = f"o{rng.randint(0, 14)}"
        old = orders.get(order_id)
        moved = old is not None and rng.random() < 0.1
        owner = rng.choice("abc") if old is None or moved else old["customer_id"]
        new = random_version(rng, order_id, owner, old)
        if old is not None and old["customer_id"] != owner:
            kept.pop(old["customer_id"], None)  # it lost an order: recomputed below
            old = None  # the new owner never counted it
        has_orders = any(o["customer_id"] == owner for o in orders.values())
        aggregate = kept.get(owner) if has_orders else incremental.empty_aggregate(owner)
        orders[order_id] = new
        expected = reference(list(orders.values()))
        if aggregate is not None and incremental.apply_change(aggregate, old, new, WINDOW_START):
            applied += 1
            kept[owner] = aggregate
        else:
            recomputed += 1
            kept[owner] = incremental.from_stored(expected[owner])
        for customer_id in list(kept):
            if customer_id not in expected:  # left without orders
                del kept[customer_id]
        for customer_id, row in expected.items():
            if customer_id not in kept:
                kept[customer_id] = incremental.from_stored(row)
            assert incremental.finished(kept[customer_id]) == row, (seed, step, customer_id)
    # both branches ran (this data is adversarial: channels, regions and currencies vary)
    assert applied > 30 and recomputed > 0


def test_stored_aggregates_are_current_until_an_order_leaves_the_window() -> None:
    row = {
        "aggregated_at": NOW - timedelta(days=2),
        "window_oldest_at": WINDOW_START + timedelta(days=1),
    }
    assert incremental.still_current(row, NOW, WINDOW_START)
    assert not incremental.still_current(row, NOW + timedelta(days=1), WINDOW_START + timedelta(1))
    assert not incremental.still_current(
        dict(row, aggregated_at=NOW + timedelta(1)), NOW, WINDOW_START
    )
    assert incremental.still_current(dict(row, window_oldest_at=None), NOW, WINDOW_START)
