"""Ingest use cases: accept a record, store it, queue its canonical event. Flush, never commit."""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.ingest.models import StoredEvent
from services.ingest.repository import EventStore
from shared import topics
from shared.bus import add_to_outbox
from shared.events import Order, OrderRecorded, encode_event, utcnow


def accept_order(session: Session, order: Order, source: str = "rest") -> StoredEvent:
    event = OrderRecorded(source=f"ingest/{source}", key=order.customer_id, data=order)
    stored = EventStore(session).append(
        StoredEvent(
            event_id=str(event.event_id),
            kind="order",
            entity_id=order.order_id,
            customer_id=order.customer_id,
            topic=topics.ORDERS,
            envelope=encode_event(event),
            received_at=utcnow(),
        )
    )
    add_to_outbox(session, topics.ORDERS, event)
    return stored
