"""Builders of consumed events for the profile tests; applying them; searching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from services.profile import consuming, customer_search
from services.profile.config import Settings
from services.profile.repository import ProfileRow
from shared.db import Database
from shared.events import (
    Customer,
    CustomerRecordedEvent,
    Interaction,
    InteractionRecordedEvent,
    Order,
    OrderRecordedEvent,
    SegmentChangedEvent,
    SegmentChangedPayload,
)
from tests.conftest import runtime_of

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def order(
    customer_id: str,
    order_id: str,
    status: str = "paid",
    amount: str = "199.00",
    *,
    minutes: int = 0,
    created_minutes: int | None = None,
    buyer: dict[str, Any] | None = None,
    shipping: dict[str, Any] | None = None,
    **extra: Any,
) -> OrderRecordedEvent:
    created = T0 + timedelta(minutes=created_minutes if created_minutes is not None else 0)
    data = Order.model_validate(
        {
            "order_id": order_id,
            "customer_id": customer_id,
            "status": status,
            "created_at": created,
            "updated_at": T0 + timedelta(minutes=minutes),
            "currency": "CNY",
            "total_amount": amount,
            "channel": "tmall",
            "buyer": buyer,
            "shipping": shipping,
            **extra,
        }
    )
    return OrderRecordedEvent(source="ingest/test", key=customer_id, data=data)


def customer(customer_id: str, *, minutes: int = 0, **fields: Any) -> CustomerRecordedEvent:
    data = Customer.model_validate(
        {"customer_id": customer_id, "updated_at": T0 + timedelta(minutes=minutes), **fields}
    )
    return CustomerRecordedEvent(source="ingest/test", key=customer_id, data=data)


def interaction(
    customer_id: str, interaction_id: str, kind: str, **fields: Any
) -> InteractionRecordedEvent:
    data = Interaction.model_validate(
        {
            "interaction_id": interaction_id,
            "customer_id": customer_id,
            "kind": kind,
            "occurred_at": fields.pop("occurred_at", T0),
            **fields,
        }
    )
    return InteractionRecordedEvent(source="ingest/test", key=customer_id, data=data)


def segment_changed(
    customer_id: str,
    *,
    minutes: int = 0,
    rfm_segment: str = "new",
    lifecycle_stage: str = "new",
    segments: list[str] | None = None,
    policy_version: int = 1,
    removed: bool = False,
    first_order_at: datetime | None = None,
) -> SegmentChangedEvent:
    data = SegmentChangedPayload.model_validate(
        {
            "customer_id": customer_id,
            "policy_version": policy_version,
            "as_of": T0 + timedelta(minutes=minutes),
            "to": None
            if removed
            else {
                "recency_days": 1,
                "frequency": 1,
                "monetary": "199.00",
                "r_score": 5,
                "f_score": 1,
                "m_score": 3,
                "rfm_code": "513",
                "rfm_segment": rfm_segment,
                "lifecycle_stage": lifecycle_stage,
                "value_quadrant": "pending",
                "first_order_at": first_order_at,
            },
            "segments": segments or [],
            "removed": removed,
        }
    )
    return SegmentChangedEvent(source="segment", key=customer_id, data=data)


def apply(db: Database, settings: Settings, *events: Any) -> None:
    """Fold events into the profiles in one transaction, as a consumed batch."""
    with db.unit_of_work() as session:
        consuming.apply_events(session, list(events), settings)


def feed(client: TestClient, *events: Any) -> None:
    """One consumed batch into the service behind an API client, as the consumer loop runs it."""
    runtime = runtime_of(client)
    apply(runtime.db, runtime.settings, *events)  # type: ignore[arg-type]


def search(session: Session, settings: Settings, **filters: Any) -> list[ProfileRow]:
    """The profiles matching only the given filters (the others None), the first 10."""
    query = customer_search.CustomerQuery(**filters)
    return customer_search.matching_profiles(
        session, query, after=None, limit=10, settings=settings
    )
