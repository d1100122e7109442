"""Publishing again: what the broker has not acknowledged yet, and the current versions of
a range queued once more (``POST /v1/admin/replay``, ``python -m services.ingest replay``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from services.ingest.repository import EventStore


def pending_events(session: Session) -> list[tuple[str, str | None, bytes]]:
    """Everything not yet acknowledged by the broker, ``(topic, key, value)``: current
    versions past the published watermark, then the outbox (dead letters, replays, markers)."""
    store = EventStore(session)
    rows: list[tuple[str, str | None, bytes]] = [
        (t, k, v) for _, t, k, v in store.unpublished(store.published_sequence(), 10**9)
    ]
    rows.extend(store.outbox_rows())
    return rows


def replay(
    session: Session,
    *,
    from_sequence: int | None = None,
    to_sequence: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Sequence[str] | None = None,
) -> int:
    """Queue the current versions in a range (by sequence and/or time) for publication again."""
    return EventStore(session).replay_into_outbox(
        from_sequence=from_sequence,
        to_sequence=to_sequence,
        since=since,
        until=until,
        kinds=kinds,
    )
