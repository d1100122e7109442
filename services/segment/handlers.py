"""The consumer's handler registry: order versions and profile merges/erasures, one
transaction per poll (see ``shared.registry``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from services.segment import per_event
from shared.bus import Inbound
from shared.events import (
    ContactPolicyChangedEvent,
    OrderRecordedEvent,
    ProfileErasedEvent,
    ProfileMergedEvent,
    ProfileUnmergedEvent,
    ProfileUpdatedEvent,
)
from shared.registry import Registry

Clock = Callable[[], datetime]


def score_batch(session: Session, messages: list[Inbound], clock: Clock) -> None:
    """Every message in order, then one scoring of whom they touched, as of ``clock()``
    (injectable so tests can fix time)."""
    per_event.apply_messages(session, messages, clock())
    for message in messages:
        if message.event_type == "profile.erased":
            # the deleted orders and scores must not stay readable in SQLite's WAL
            message.checkpoint_after_commit = True


#: one batch handler for all four: the whole poll batch is scored once
HANDLERS: Registry[Clock] = Registry(
    {
        OrderRecordedEvent: score_batch,
        ProfileMergedEvent: score_batch,
        ProfileUnmergedEvent: score_batch,
        ProfileErasedEvent: score_batch,
    },
    # contact policies and targeting attributes do not change scores
    ignores=[ContactPolicyChangedEvent, ProfileUpdatedEvent],
)


def make_batch_handler(clock: Clock) -> Callable[[Session, list[Inbound]], None]:
    """The consumer loop's batch handler, scoring as of ``clock()``."""
    return HANDLERS.batch_handler(clock)
