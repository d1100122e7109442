"""The demo shop generator: realistic shape, deterministic, and data ingest accepts."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from datetime import date, datetime
from decimal import Decimal

import pytest

from crmctl.demo.feed import plan
from crmctl.demo.shop import CSV_COLUMNS, SHANGHAI, Shop, csv_rows, generate
from services.ingest.import_rows import RowMapper
from services.ingest.validation import (
    Rules,
    validate_customer,
    validate_interaction,
    validate_order,
)

NOW = datetime(2026, 12, 5, 20, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate(4000, seed=7, now=NOW)


def _orders_per_day(shop: Shop) -> Counter[date]:
    return Counter(date.fromisoformat(o["created_at"][:10]) for o in shop.orders)


def test_the_same_seed_gives_the_same_shop() -> None:
    first, second = generate(200, seed=3, now=NOW), generate(200, seed=3, now=NOW)
    assert first.orders == second.orders and first.customers == second.customers
    assert generate(200, seed=4, now=NOW).orders != first.orders


def test_purchase_counts_are_skewed(shop: Shop) -> None:
    counts = Counter(o["customer_id"] for o in shop.orders)
    assert len(counts) == len(shop.customers)  # everyone ordered at least once (or tried)
    once = sum(1 for n in counts.values() if n == 1)
    assert once / len(counts) > 0.5
    assert max(counts.values()) >= 20
    top_decile = sorted(counts.values(), reverse=True)[: len(counts) // 10]
    assert sum(top_decile) / len(shop.orders) > 0.3


def test_orders_peak_on_11_11_618_and_before_spring_festival(shop: Shop) -> None:
    per_day = _orders_per_day(shop)
    october = statistics.mean(per_day[date(2026, 10, d)] for d in range(15, 31))
    may = statistics.mean(per_day[date(2026, 5, d)] for d in range(15, 31))
    march = statistics.mean(per_day[date(2026, 3, d)] for d in range(10, 31))
    assert per_day[date(2026, 11, 11)] > 4 * october
    assert per_day[date(2026, 6, 18)] > 3 * may
    before_festival = statistics.mean(per_day[date(2026, 2, d)] for d in range(1, 16))
    assert before_festival > 1.5 * march  # Spring Festival 2026 is 17 February


def test_the_shop_has_every_kind_of_record(shop: Shop) -> None:
    statuses = Counter(o["status"] for o in shop.orders)
    assert {
        "created",
        "paid",
        "shipped",
        "completed",
        "cancelled",
        "refunded",
        "partially_refunded",
    } <= set(statuses)
    assert any(o["promotion"] for o in shop.orders)  # flash sales
    kinds = Counter(i["kind"] for i in shop.interactions)
    assert {"review", "complaint", "return"} <= set(kinds)
    assert len({o["channel"] for o in shop.orders}) >= 5
    assert len({c["address"]["province"] for c in shop.customers}) >= 15
    assert all(o["created_at"] < NOW.isoformat() for o in shop.orders)


def test_ingest_accepts_every_generated_record(shop: Shop) -> None:
    rules = Rules()
    for customer in shop.customers[:500]:
        validate_customer(customer, rules, NOW)
    for order in shop.orders[:3000]:  # raises RecordRejected on any invalid field
        valid = validate_order({k: v for k, v in order.items() if v is not None}, rules, NOW)
        assert valid.buyer is not None and valid.buyer.mobile  # a valid mobile, not dropped
        assert (
            valid.shipping is not None and valid.shipping.province == order["shipping"]["province"]
        )
    for interaction in shop.interactions[:1000]:
        validate_interaction(interaction, rules, NOW)


def test_the_csv_rows_are_orders_ingest_accepts(shop: Shop) -> None:
    orders = shop.orders[:1500]
    rows = csv_rows(orders)
    assert len(rows) == sum(len(o["items"]) for o in orders) > len(orders)  # a line-item export
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)
    mapper = RowMapper(list(CSV_COLUMNS), {}, "CNY")
    groups = [list(g) for _, g in itertools.groupby(rows, key=lambda r: r[0])]
    assert len(groups) == len(orders)
    for group, order in zip(groups, orders, strict=True):
        valid = validate_order(mapper.order_of(group), Rules(), NOW)  # as the import joins them
        assert valid.total_amount == Decimal(order["total_amount"])
        assert len(valid.items) == len(order["items"])


def test_every_order_takes_one_path(shop: Shop) -> None:
    split = plan(shop)
    assert len(split.kafka) + len(split.rest) + len(split.csv) == len(shop.orders)
    assert min(len(split.rest), len(split.csv)) > 0.1 * len(shop.orders)
    by_path = {o["customer_id"]: "k" for o in split.kafka}
    assert not any(o["customer_id"] in by_path for o in split.rest + split.csv)
