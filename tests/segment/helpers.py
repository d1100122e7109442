"""Builders shared by the segment tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from services.segment import per_event
from services.segment.app import MIGRATIONS, create_app
from services.segment.config import Settings
from shared.bus import Inbound
from shared.db import Database, run_migrations
from shared.events import (
    Order,
    OrderRecordedEvent,
    ProfileErasedEvent,
    ProfileErasedPayload,
    ProfileMergedEvent,
    ProfileMergedPayload,
)
from tests.conftest import ADMIN_KEY, api_client, runtime_of

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
HEADERS = {"X-API-Key": ADMIN_KEY}
READER = {"X-API-Key": "reader-key"}
_offsets = itertools.count()


def database(url: str) -> Database:
    run_migrations(MIGRATIONS, url)
    return Database.from_url(url)


def order(
    order_id: str,
    customer_id: str,
    *,
    days_ago: float,
    amount: str = "100.00",
    status: str = "paid",
    refunded: str = "0",
    version_minutes: int = 0,
    channel: str | None = "tmall",
    category: str | None = "accessories",
    province: str | None = "浙江省",
    currency: str = "CNY",
) -> Order:
    created = NOW - timedelta(days=days_ago)
    return Order(
        order_id=order_id,
        customer_id=customer_id,
        status=status,  # type: ignore[arg-type]
        created_at=created,
        paid_at=created + timedelta(minutes=2) if status != "created" else None,
        updated_at=created + timedelta(minutes=2 + version_minutes),
        currency=currency,
        total_amount=Decimal(amount),
        refunded_amount=Decimal(refunded),
        channel=channel,
        items=[{"sku": "A-1", "category": category, "unit_price": amount, "quantity": 1}]
        if category
        else [],
        shipping={"province": province, "city": "杭州市"} if province else None,
    )


def inbound(event: Any) -> Inbound:
    return Inbound(
        topic="crm.orders.v1",
        partition=0,
        offset=next(_offsets),
        key=event.key,
        value=b"",
        event_type=event.type,
        dedup_id=str(event.event_id),
        event=event,
    )


def recorded(o: Order) -> Inbound:
    return inbound(OrderRecordedEvent(source="test", key=o.customer_id, data=o))


def merged(survivor: str, *ids: str) -> Inbound:
    return inbound(
        ProfileMergedEvent(
            source="test",
            key=survivor,
            data=ProfileMergedPayload(
                survivor_id=survivor, merged_ids=list(ids), reason="test", merge_id="m1"
            ),
        )
    )


def erased(customer_id: str, at: datetime = NOW) -> Inbound:
    return inbound(
        ProfileErasedEvent(
            source="test",
            key=customer_id,
            data=ProfileErasedPayload(customer_id=customer_id, erasure_id="e1", requested_at=at),
        )
    )


@contextmanager
def api(tmp_path: Path, database_url: str, orders: list[Order]) -> Iterator[TestClient]:
    """The segment API at :data:`NOW` with ``orders`` consumed; no broker: the relay is
    stopped, so published events wait in the outbox."""
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=database_url,
        api_key=ADMIN_KEY,
        api_keys={"reader-key": ["segment:read"]},
        run_consumer=False,
        rescore_at_start=False,
    )
    app = create_app(settings)
    app.state.runtime.clock = lambda: NOW
    with api_client(app, keep_outbox=True) as client:
        consume(client, *orders)
        yield client


def consume(client: TestClient, *orders: Order) -> None:
    """One consumed batch of these orders into the service behind an API client."""
    with runtime_of(client).db.unit_of_work() as session:
        per_event.apply_messages(session, [recorded(o) for o in orders], NOW)
