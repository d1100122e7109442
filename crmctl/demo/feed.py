"""Streams a generated shop into the running system the three ways real producers do:
raw Kafka topics (kafka-python), ingest's REST batch endpoint, and a CSV import."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from crmctl.client import Api, CrmError
from crmctl.demo.shop import CSV_COLUMNS, Shop, csv_rows

Progress = Callable[[str, int], None]


@dataclass
class Plan:
    """Which orders go which way: by customer, so one customer's orders share a path."""

    kafka: list[dict[str, Any]] = field(default_factory=list)
    rest: list[dict[str, Any]] = field(default_factory=list)
    csv: list[dict[str, Any]] = field(default_factory=list)


def plan(shop: Shop) -> Plan:
    split = Plan()
    for order in shop.orders:
        bucket = (
            int(hashlib.blake2b(order["customer_id"].encode(), digest_size=2).hexdigest(), 16) % 20
        )
        (split.rest if bucket < 3 else split.csv if bucket < 6 else split.kafka).append(order)
    return split


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


def produce_raw(
    bootstrap_servers: str,
    namespace: str,
    shop: Shop,
    orders: list[dict[str, Any]],
    progress: Progress,
) -> int:
    """Customers, orders and interactions onto the raw topics, keyed by customer id."""
    import kafka

    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap_servers, linger_ms=5, batch_size=256 * 1024, acks="all"
    )
    sent = 0
    try:
        for topic, records in (
            ("crm.raw.customers.v1", shop.customers),
            ("crm.raw.orders.v1", orders),
            ("crm.raw.interactions.v1", shop.interactions),
        ):
            for record in records:
                producer.send(
                    namespace + topic,
                    key=record["customer_id"].encode(),
                    value=json.dumps(_clean(record), ensure_ascii=False).encode(),
                )
                sent += 1
                if sent % 2000 == 0:
                    progress("kafka", 2000)
        producer.flush(60)
        progress("kafka", sent % 2000)
    finally:
        producer.close()
    return sent


def post_batches(
    api: Api, orders: list[dict[str, Any]], progress: Progress, size: int = 2000
) -> dict[str, int]:
    """Orders through ``POST /v1/orders/batch``; returns accepted / duplicate / rejected."""
    totals = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for start in range(0, len(orders), size):
        chunk = [_clean(o) for o in orders[start : start + size]]
        result = api.post("ingest", "/v1/orders/batch", json={"orders": chunk})
        for key in totals:
            totals[key] += int(result.get(key, 0))
        progress("rest", len(chunk))
    return totals


def import_csv(api: Api, orders: list[dict[str, Any]], progress: Progress) -> dict[str, Any]:
    """Orders as a CSV file through ``POST /v1/imports/orders``, followed to its end."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(orders))
    data = buffer.getvalue().encode("utf-8")
    job = api.post(
        "ingest", "/v1/imports/orders", files={"file": ("demo-orders.csv", data, "text/csv")}
    )
    done = 0
    while job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = api.get("ingest", f"/v1/imports/{job['job_id']}", params={"limit": 100})
        # counted in orders like the bar's total (an order of several items spans rows)
        counted = job["accepted"] + job["duplicate"] + job["rejected"]
        progress("csv", counted - done)
        done = counted
    if job["status"] != "completed":
        raise CrmError(f"the CSV import failed: {job.get('error')}")
    return job


def set_consents(api: Api, customer_ids: list[str], channels: tuple[str, ...], at: str) -> None:
    """Marketing consent on ``channels`` for each customer (``PUT .../contact-policy``)."""
    policy = {"channels": {c: {"consented": True, "source": "demo", "at": at} for c in channels}}

    def put(customer_id: str) -> None:
        api.call("PUT", "profile", f"/v1/customers/{customer_id}/contact-policy", json=policy)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, customer_ids))
