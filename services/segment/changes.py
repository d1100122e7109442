"""``segment.changed``: who changed in a transaction, their events for the outbox and
their moves in and out of custom segments (the per-event path and the rescoring alike)."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from services.segment import scoring
from services.segment.money import money_text
from services.segment.repository import Segments
from shared import topics
from shared.events import SCHEMA_VERSION, ensure_aware, utcnow

SOURCE = "segment"

#: The stored snapshot columns (the last published state).
SNAPSHOT_WRITE_COLUMNS = [*scoring.SCORE_COLUMNS, "segments", "policy_version", "scored_at"]


def snapshot_of(row: dict[str, Any]) -> dict[str, Any]:
    """The wire form of a ScoreSnapshot from a scored (or stored) customer row."""
    get = row.get
    first, last = get("first_order_at"), get("last_order_at")
    # orjson writes RFC 3339; a naive time is UTC
    if first is not None and first.tzinfo is None:
        first = ensure_aware(first)
    if last is not None and last.tzinfo is None:
        last = ensure_aware(last)
    currency = get("currency")
    return {
        "recency_days": get("recency_days"),
        "frequency": int(get("frequency") or 0),
        "monetary": money_text(get("monetary_e4") or 0, currency),
        "currency": currency,
        "r_score": get("r_score"),
        "f_score": get("f_score"),
        "m_score": get("m_score"),
        "rfm_code": get("rfm_code"),
        "rfm_segment": get("rfm_segment"),
        "lifecycle_stage": get("lifecycle_stage"),
        "purchase_bucket": get("purchase_bucket"),
        "funnel_bucket": get("funnel_bucket"),
        "value_quadrant": get("value_quadrant"),
        "first_order_at": first,
        "last_order_at": last,
    }


def segment_changed_record(
    customer_id: str,
    policy_version: int,
    as_of: datetime,
    previous: dict[str, Any] | None,
    current: dict[str, Any] | None,
    segments: Sequence[str],
    previous_segments: Sequence[str],
    removed: bool = False,
    occurred_at: datetime | None = None,
    predictions: dict[str, Any] | None = None,
) -> tuple[str, str, bytes]:
    """A ``segment.changed`` event encoded for the outbox (same JSON as the pydantic model)."""
    if segments or previous_segments:
        now, before = list(segments), set(previous_segments)
        entered, left = [s for s in now if s not in before], sorted(before.difference(now))
    else:
        now, entered, left = [], [], []
    body = {
        "event_id": _uuid4(),
        "schema_version": SCHEMA_VERSION,
        "occurred_at": occurred_at or utcnow(),
        "source": SOURCE,
        "key": customer_id,
        "type": "segment.changed",
        "data": {
            "customer_id": customer_id,
            "policy_version": policy_version,
            "as_of": ensure_aware(as_of),
            "from": previous,
            "to": current,
            "segments": now,
            "segments_entered": entered,
            "segments_left": left,
            "removed": removed,
            "predictions": predictions,
        },
    }
    return topics.SEGMENTS, customer_id, orjson.dumps(body)


#: event ids need uniqueness, not secrecy: a generator seeded from os.urandom per process
_RANDOM = random.Random(os.urandom(32))
_VERSION_BITS = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_VERSION_4 = (0x4 << 76) | (0x2 << 62)


def _uuid4() -> str:
    """A random (version 4) UUID as text, ~3x faster than ``str(uuid.uuid4())``."""
    h = f"{_RANDOM.getrandbits(128) & _VERSION_BITS | _VERSION_4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class StateChanges:
    """The customers whose state changed in one transaction (``published_state.state_changed``):
    their ``segment.changed`` events and their moves in and out of custom segments, recorded
    the same way by the per-event path and the full rescoring."""

    def __init__(
        self,
        policy_version: int,
        now: datetime,
        predictions: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.policy_version = policy_version
        self.now = now
        #: the wire form of the changed customers' stored predictions (predictive.py)
        self.predictions = predictions or {}
        self.occurred_at = utcnow()
        self.records: list[tuple[str, str, bytes]] = []
        self.entered: list[dict[str, Any]] = []
        self.left: list[tuple[str, str]] = []

    def add(
        self, previous: dict[str, Any] | None, current: dict[str, Any], segments: list[str]
    ) -> None:
        """One changed customer: ``previous`` as stored (None: no row), ``current`` now."""
        customer_id = current["customer_id"]
        # a row without a state hash holds aggregates whose state was never published
        if previous is not None and previous.get("state_hash") is None:
            previous = None
        before = list(previous.get("segments") or ()) if previous is not None else []
        if segments or before:
            self.entered.extend(
                {"segment_id": s, "customer_id": customer_id, "entered_at": self.now}
                for s in segments
                if s not in before
            )
            self.left.extend((s, customer_id) for s in before if s not in segments)
        self.records.append(
            segment_changed_record(
                customer_id,
                self.policy_version,
                self.now,
                snapshot_of(previous) if previous is not None else None,
                snapshot_of(current),
                segments,
                before,
                occurred_at=self.occurred_at,
                predictions=self.predictions.get(customer_id),
            )
        )

    def store_memberships(self, session: Session) -> None:
        if not self.entered and not self.left:
            return
        repo = Segments(session)
        repo.add_members(self.entered)
        repo.remove_members(self.left)
        repo.refresh_counts([e["segment_id"] for e in self.entered] + [s for s, _ in self.left])
