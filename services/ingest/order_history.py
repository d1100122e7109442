"""An order with every version the event store kept (use case; reads only)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.orm import Session

from services.ingest.repository import EventStore
from shared.errors import NotFound
from shared.events import ensure_aware


def order_history(session: Session, order_id: str) -> dict[str, Any]:
    """``{order_id, customer_id, current, versions: [...]}``, versions in arrival order;
    ``current`` is the version published as the order's state (the newest by its version
    time and status, whatever the arrival order). 404 if no version was ever accepted."""
    rows = EventStore(session).history_of("order", order_id)
    if not rows:
        raise NotFound("no such order")
    versions = []
    for sequence, version, current, source, received_at, envelope in rows:
        event = orjson.loads(envelope)
        versions.append(
            {
                "sequence": sequence,
                "version": version,
                "current": bool(current),
                "source": source,
                "received_at": ensure_aware(received_at),
                "event_id": event["event_id"],
                "order": event["data"],
            }
        )
    current = [v for v in versions if v["current"]]
    newest = current[-1] if current else versions[-1]
    return {
        "order_id": order_id,
        "customer_id": newest["order"].get("customer_id"),
        "current": newest["order"],
        "versions": versions,
    }
