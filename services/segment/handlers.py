"""The consumer's batch handler: order versions and profile merges/erasures, one transaction per poll."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from services.segment import service
from shared.bus import Inbound

#: event types this service acts on; anything else on its topics is recorded and skipped
HANDLED_TYPES = frozenset(
    {"order.recorded", "profile.merged", "profile.unmerged", "profile.erased"}
)


def make_batch_handler(clock: Callable[[], datetime]) -> Callable[[Session, list[Inbound]], None]:
    """A batch handler that scores as of ``clock()`` (injectable so tests can fix time)."""

    def handle_batch(session: Session, messages: list[Inbound]) -> None:
        relevant = [m for m in messages if m.event_type in HANDLED_TYPES]
        if relevant:
            service.apply_messages(session, relevant, clock())
        for message in relevant:
            if message.event_type == "profile.erased":
                # the deleted orders and scores must not stay readable in SQLite's WAL
                message.checkpoint_after_commit = True

    return handle_batch
