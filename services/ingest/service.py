"""Ingest use cases: validate records, decide their version, store them, queue canonical events.

Flush, never commit: the caller (a route, the consumer loop, the import job) owns the
unit of work. The event store is its own outbox: a current version committed to
``stored_events`` is what the relay publishes (see ``delivery.py``), so storing a record
and queueing its event are one write.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

import orjson
from sqlalchemy.orm import Session

from services.ingest import validation
from services.ingest.erasure import scrub, scrub_erased
from services.ingest.repository import EventStore, IntakeStats
from services.ingest.validation import Reason, RecordRejected, Rules
from shared import topics
from shared.events import (
    SCHEMA_VERSION,
    STATUS_RANK,
    Customer,
    CustomerRecordedEvent,
    EnvelopeBase,
    Interaction,
    InteractionRecordedEvent,
    Order,
    OrderRecordedEvent,
    encode_event,
    utcnow,
)

Kind = Literal["order", "customer", "interaction"]
Outcome = Literal["accepted", "duplicate", "rejected"]

_NO_TIME = "0000-00-00T00:00:00.000000Z"


@dataclass
class ItemResult:
    """What happened to one submitted record."""

    index: int
    status: Outcome
    id: str | None = None
    event_id: str | None = None
    sequence: int | None = None
    current: bool | None = None
    reasons: list[Reason] = field(default_factory=list)
    #: descriptive fields dropped from an accepted record (``validation.RULES["warnings"]``)
    warnings: list[Reason] = field(default_factory=list)


@dataclass(frozen=True)
class KindSpec:
    kind: Kind
    topic: str
    validate: Callable[..., Any]  # (raw, rules, now, warnings) -> payload model
    envelope: Callable[..., EnvelopeBase]
    entity_id: Callable[[Any], str]
    version: Callable[[Any], str]
    #: the part of the version that orders versions (a newer one becomes current)
    precedence: Callable[[str], str]


@lru_cache(maxsize=65536)
def _utc_text(moment: datetime | None) -> str:
    """Sortable UTC text of a moment (timestamps repeat within batches: cached)."""
    if moment is None:
        return _NO_TIME
    # the same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), several times faster
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def _fingerprint(model: Any) -> str:
    data = orjson.dumps(model.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def order_version(order: Order) -> str:
    """``<version_at in UTC>|<status rank>``: sorts like :meth:`Order.version_key`."""
    moment, rank = order.version_key()
    return f"{_utc_text(moment)}|{rank}"


def order_data_version(data: dict[str, Any]) -> str:
    """:func:`order_version` of validated order data (``validation.order_data``)."""
    moment = data["updated_at"] or data["paid_at"] or data["created_at"]
    return f"{_utc_text(moment)}|{STATUS_RANK[data['status']]}"


def encode_order(data: dict[str, Any], event_id: str, source: str, occurred_at: datetime) -> bytes:
    """The ``order.recorded`` event of validated order data, byte for byte what
    ``encode_event(OrderRecordedEvent(...))`` gives (a test proves it) without building and
    serialising the models: money as strings, UTC as ``Z``, fields in model order."""
    return orjson.dumps(
        {
            "event_id": event_id,
            "schema_version": SCHEMA_VERSION,
            "occurred_at": occurred_at,
            "source": source,
            "key": data["customer_id"],
            "type": "order.recorded",
            "data": data,
        },
        default=_money_text,
        option=orjson.OPT_UTC_Z,
    )


def _money_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def customer_version(customer: Customer) -> str:
    """``<updated_at in UTC or zeros>|<content fingerprint>``: identical content is a duplicate."""
    return f"{_utc_text(customer.updated_at)}|{_fingerprint(customer)}"


def interaction_version(interaction: Interaction) -> str:
    """``<zeros>|<content fingerprint>``: the latest different content is current."""
    return f"{_NO_TIME}|{_fingerprint(interaction)}"


KINDS: dict[str, KindSpec] = {
    "order": KindSpec(
        "order",
        topics.ORDERS,
        validation.validate_order,
        OrderRecordedEvent,
        lambda o: o.order_id,
        order_version,
        lambda v: v,
    ),
    "customer": KindSpec(
        "customer",
        topics.CUSTOMERS,
        validation.validate_customer,
        CustomerRecordedEvent,
        lambda c: c.customer_id,
        customer_version,
        lambda v: v.partition("|")[0],
    ),
    "interaction": KindSpec(
        "interaction",
        topics.INTERACTIONS,
        validation.validate_interaction,
        InteractionRecordedEvent,
        lambda i: i.interaction_id,
        interaction_version,
        lambda v: v.partition("|")[0],
    ),
}


@dataclass
class Prepared:
    """Records of one kind, validated, versioned and encoded: everything before the database.

    Preparing is the CPU-heavy part, so callers do it before taking the write lock.
    """

    kind: str
    source: str
    now: datetime
    results: list[ItemResult]
    #: (result index, entity id, version, customer id, event id, encoded event)
    candidates: list[tuple[int, str, str, str, str, bytes]]


def prepare(
    kind: str,
    records: Sequence[Any],
    *,
    source: str,
    rules: Rules,
    now: datetime | None = None,
) -> Prepared:
    """Validate and encode records of one kind (no I/O); a :class:`RecordRejected` in
    ``records`` (a raw record that was not even a JSON object) is rejected as it is."""
    spec = KINDS[kind]
    now = now or utcnow()
    results: list[ItemResult] = []
    candidates: list[tuple[int, str, str, str, str, bytes]] = []
    event_source = f"ingest/{source}"
    # random event ids from one os.urandom call: uuid4() per event is a system call each,
    # and every one of them hands the GIL to another thread under load
    entropy = os.urandom(16 * len(records))
    # orders (the bulk of the traffic) skip the models: validated data is encoded directly
    direct = kind == "order"
    model: Any = None
    data: dict[str, Any] = {}
    for index, raw in enumerate(records):
        event_id = uuid.UUID(bytes=entropy[16 * index : 16 * index + 16], version=4)
        warnings: list[Reason] = []
        try:
            if isinstance(raw, RecordRejected):
                raise raw
            if direct:
                data = validation.order_data(raw, rules, now, warnings)
            else:
                model = spec.validate(raw, rules, now, warnings)
        except RecordRejected as exc:
            results.append(
                ItemResult(index, "rejected", id=_loose_id(raw, kind), reasons=exc.reasons)
            )
            continue
        if direct:
            entity, customer_id = data["order_id"], data["customer_id"]
            version = order_data_version(data)
            value = encode_order(data, str(event_id), event_source, now)
        else:
            entity, customer_id = spec.entity_id(model), model.customer_id
            version = spec.version(model)
            value = encode_event(
                spec.envelope(event_id=event_id, source=event_source, key=customer_id, data=model)
            )
        candidates.append((index, entity, version, customer_id, str(event_id), value))
        results.append(ItemResult(index, "accepted", id=entity, warnings=warnings))
    return Prepared(kind, source, now, results, candidates)


def store(session: Session, prepared: Prepared) -> list[ItemResult]:
    """Decide each prepared record's fate against the stored versions and store it.

    A version already stored is a duplicate; a new version is stored and, if it is newer
    than every stored version of the entity, marked ``current``: the relay publishes
    current versions past its watermark (the store is its own outbox, so each record is
    written once); an older one is stored only. Safe to call again after a failed
    transaction.
    """
    spec = KINDS[prepared.kind]
    results = prepared.results
    event_store = EventStore(session)
    event_store.serialise_writers()
    seen = event_store.versions_of(prepared.kind, (c[1] for c in prepared.candidates))
    stored_rows: list[dict[str, Any]] = []
    late = 0
    #: envelopes of the versions this call stores, and the duplicates to compare with them
    batch_envelopes: dict[tuple[str, str], bytes] = {}
    repeats: list[tuple[ItemResult, str, str, bytes]] = []
    for index, entity, version, customer_id, event_id, value in prepared.candidates:
        result = results[index]
        result.status, result.event_id, result.current, result.sequence = (
            "accepted",
            None,
            None,
            None,
        )
        versions = seen.setdefault(entity, set())
        if version in versions:
            result.status = "duplicate"
            if prepared.kind == "order":
                repeats.append((result, entity, version, value))
            continue
        precedence = spec.precedence(version)
        current = not versions or all(precedence >= spec.precedence(v) for v in versions)
        versions.add(version)
        batch_envelopes[(entity, version)] = value
        result.event_id, result.current = event_id, current
        late += not current
        stored_rows.append(
            {
                "event_id": event_id,
                "kind": prepared.kind,
                "entity_id": entity,
                "version": version,
                "current": current,
                "customer_id": customer_id,
                "source": prepared.source,
                "topic": spec.topic,
                "envelope": value,
                "received_at": prepared.now,
            }
        )
    if repeats:
        _flag_version_conflicts(event_store, repeats, batch_envelopes)
    scrub_erased(event_store, stored_rows)
    if len(stored_rows) == 1:
        sequence = event_store.append(stored_rows[0])
        for result in results:
            if result.event_id is not None:
                result.sequence = sequence
    else:
        event_store.append_many(stored_rows)
    record_outcomes(session, prepared.source, prepared.kind, results, prepared.now, late=late)
    return results


VERSION_CONFLICT = Reason(
    "updated_at",
    "version-conflict",
    "this order version (order_id and updated_at, else paid_at / created_at, and status) is "
    "stored with different content; send the change with a later updated_at",
)


def _flag_version_conflicts(
    event_store: EventStore,
    repeats: list[tuple[ItemResult, str, str, bytes]],
    batch_envelopes: dict[tuple[str, str], bytes],
) -> None:
    """A repeated order version is a duplicate only if its content is the stored one's; with
    other content it is rejected as a version conflict (the first version stays)."""
    missing = [(e, v) for _, e, v, _ in repeats if (e, v) not in batch_envelopes]
    stored = event_store.envelopes_of_versions("order", missing) if missing else {}
    for result, entity, version, value in repeats:
        first = batch_envelopes.get((entity, version)) or stored.get((entity, version))
        if first is None:
            continue
        sent = orjson.loads(value)["data"]
        kept = orjson.loads(first)["data"]
        # a version stored scrubbed (an erased customer's) is the same content without
        # personal data
        if sent != kept and scrub("order", sent) != kept:
            result.status = "rejected"
            result.reasons = [VERSION_CONFLICT]


def accept(
    session: Session,
    kind: str,
    records: Sequence[Any],
    *,
    source: str,
    rules: Rules,
    now: datetime | None = None,
) -> list[ItemResult]:
    """Validate, version, store and queue records of one kind; one result each, in order.

    Bad records never block good ones. See :func:`prepare` and :func:`store`.
    """
    return store(
        session,
        prepare(kind, records, source=source, rules=rules, now=now),
    )


def record_outcomes(
    session: Session,
    source: str,
    kind: str,
    results: Sequence[ItemResult],
    now: datetime,
    late: int = 0,
) -> None:
    """Add the results to the per-minute intake statistics (and, as outcome ``warning``,
    the fields dropped from accepted records, by code)."""
    counts: Counter[tuple[str, str]] = Counter()
    for result in results:
        reason = result.reasons[0].code if result.reasons else ""
        counts[(result.status, reason)] += 1
        if result.status == "accepted":
            for warning in result.warnings:
                counts[("warning", warning.code)] += 1
    if late:
        counts[("accepted", "")] -= late
        counts[("accepted", "late_version")] += late
        if counts[("accepted", "")] == 0:
            del counts[("accepted", "")]
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    IntakeStats(session).add(minute, source, kind, dict(counts))


def _loose_id(raw: Any, kind: str) -> str | None:
    """The record's id if it looks like one (for the caller's report), else None."""
    if not isinstance(raw, dict):
        return None
    value = raw.get({"order": "order_id", "customer": "customer_id"}.get(kind, "interaction_id"))
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
        if len(text) <= 128 and text.isprintable():
            return text
    return None
