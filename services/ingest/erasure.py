"""A customer's erasure in ingest: every stored version and pending event rewritten without
personal data, and a tombstone for what arrives later (PIPL / GDPR). Flush, never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from services.ingest.repository import EventStore
from shared.erasure import tombstone_key, tombstone_keys
from shared.events import utcnow

_ERASED_ORDER_FIELDS: dict[str, Any] = {"buyer": None}
_KEPT_ADDRESS_FIELDS = ("province", "city", "district")
_ERASED_CUSTOMER_FIELDS: dict[str, Any] = {
    "name": None,
    "gender": None,
    "birthday": None,
    "mobiles": [],
    "phones": [],
    "emails": [],
    "wechat": None,
    "qq": None,
    "company": None,
    "title": None,
    "verified": [],
    "attributes": {},
}


def scrub(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The payload without personal data; region (province/city/district) is kept for
    anonymous regional aggregates."""
    address_field = {"order": "shipping", "customer": "address"}.get(kind)
    if address_field and data.get(address_field):
        data[address_field] = {k: data[address_field].get(k) for k in _KEPT_ADDRESS_FIELDS}
    if kind == "order":
        data.update(_ERASED_ORDER_FIELDS)
    elif kind == "customer":
        data.update(_ERASED_CUSTOMER_FIELDS)
    elif kind == "interaction":
        data.update({"text": None, "attributes": {}})
    return data


#: the field holding when a record's data happened, per kind
_DATA_TIME = {"order": "created_at", "customer": "updated_at", "interaction": "occurred_at"}


def scrub_erased(event_store: EventStore, rows: list[dict[str, Any]]) -> None:
    """Records of erased customers that belong to the erased relationship (data time before
    the erasure, or none) are stored and published without personal data."""
    if not rows:
        return
    ids_by_key = tombstone_keys({row["customer_id"] for row in rows})
    erased = {ids_by_key[key]: at for key, at in event_store.tombstones(set(ids_by_key)).items()}
    if not erased:
        return
    for row in rows:
        erased_at = erased.get(row["customer_id"])
        if erased_at is None:
            continue
        event = orjson.loads(row["envelope"])
        happened = event["data"].get(_DATA_TIME[row["kind"]])
        if happened is not None and datetime.fromisoformat(happened) >= erased_at:
            continue  # a new relationship, begun after the erasure
        event["data"] = scrub(row["kind"], event["data"])
        row["envelope"] = orjson.dumps(event)


def erase_customer(session: Session, customer_id: str, erased_at: datetime | None = None) -> int:
    """Remove a customer's personal data from every stored version and pending event
    (PIPL / GDPR erasure) and remember the erasure (a tombstone: the id's hash and
    ``erased_at``) for what arrives later; returns how many stored versions were rewritten."""
    store = EventStore(session)
    store.add_tombstone(tombstone_key(customer_id), erased_at or utcnow())
    rewritten: dict[bytes, bytes] = {}
    count = 0
    for sequence, kind, envelope in store.envelopes_of(customer_id):
        event = orjson.loads(envelope)
        event["data"] = scrub(kind, event["data"])
        value = orjson.dumps(event)
        rewritten[envelope] = value
        store.replace_envelope(sequence, value)
        count += 1
    store.replace_pending(customer_id, rewritten)
    return count
