"""Ingest's part of a subject-access export: every version of every record it kept."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.orm import Session

from services.ingest.repository import EventStore
from shared.events import ensure_aware

#: section name and id field per stored kind
_SECTIONS = {
    "order": ("orders", "order_id"),
    "customer": ("customer_records", "customer_id"),
    "interaction": ("interactions", "interaction_id"),
}


def export_section(session: Session, customer_ids: list[str]) -> dict[str, Any]:
    """``{orders, customer_records, interactions}``: per record its id and every version
    kept (arrival order), each with when and how it arrived and the record as validated."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n, _ in _SECTIONS.values()}
    for kind, entity_id, sequence, version, current, source, received_at, envelope in EventStore(
        session
    ).subject_history(customer_ids):
        name, _ = _SECTIONS.get(kind, (kind, "id"))
        grouped.setdefault(name, {}).setdefault(entity_id, []).append(
            {
                "sequence": sequence,
                "version": version,
                "became_current": bool(current),
                "source": source,
                "received_at": ensure_aware(received_at).isoformat(),
                "record": orjson.loads(envelope)["data"],
            }
        )
    id_field = {name: field for name, field in _SECTIONS.values()}
    return {
        name: [
            {id_field.get(name, "id"): entity_id, "versions": versions}
            for entity_id, versions in records.items()
        ]
        for name, records in grouped.items()
    }
