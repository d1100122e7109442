"""The handler registry for the topics profile consumes (see ``shared.registry``): one
transaction per poll batch."""

from __future__ import annotations

import gc
from collections.abc import Callable

from sqlalchemy.orm import Session

from services.profile import apikeys, consuming, erasure_acks, subject_exports
from services.profile.config import Settings
from shared.apikeys import ApiKeyUsedEvent
from shared.bus import Inbound
from shared.events import (
    CustomerRecordedEvent,
    ErasureAppliedEvent,
    InteractionRecordedEvent,
    OrderRecordedEvent,
    SegmentChangedEvent,
    SegmentDeletedEvent,
)
from shared.exports import ExportPartRecordedEvent
from shared.registry import Registry


def note_keys_used(session: Session, messages: list[Inbound], settings: Settings) -> None:
    for message in messages:
        event: ApiKeyUsedEvent = message.event
        apikeys.note_used(session, event.data.key_id, event.data.last_used_at)


def record_export_parts(session: Session, messages: list[Inbound], settings: Settings) -> None:
    for message in messages:
        part: ExportPartRecordedEvent = message.event
        subject_exports.record_part(session, part)


def record_erasure_acks(session: Session, messages: list[Inbound], settings: Settings) -> None:
    erasure_acks.record_applied(session, [m.event for m in messages])


#: topics with a consumer loop of their own (their own decoder and consumer group)
SIDE_TOPICS = (ApiKeyUsedEvent.topic, ExportPartRecordedEvent.topic, ErasureAppliedEvent.topic)

fold = consuming.FOLD.step

HANDLERS: Registry[Settings] = Registry(
    {
        # steps of one fold: each profile is loaded and written once per batch
        CustomerRecordedEvent: fold(consuming.apply_customer_event, note=consuming.note_customer),
        OrderRecordedEvent: fold(consuming.apply_order_event, note=consuming.note_order),
        InteractionRecordedEvent: fold(
            consuming.apply_interaction_event, note=consuming.note_interaction
        ),
        SegmentChangedEvent: fold(
            consuming.apply_segment_event, note=consuming.note_segment_change
        ),
        ApiKeyUsedEvent: note_keys_used,
        ExportPartRecordedEvent: record_export_parts,
        ErasureAppliedEvent: record_erasure_acks,
    },
    # profile holds memberships only as segment.changed reports them
    ignores=[SegmentDeletedEvent],
)


def make_batch_handler(settings: Settings) -> Callable[[Session, list[Inbound]], None]:
    """The batch handler of the profile-events consumer (customers, orders, interactions,
    segment changes): one fold of each poll batch."""
    events = HANDLERS.without_topics(*SIDE_TOPICS)

    def handle(session: Session, messages: list[Inbound]) -> None:
        # A batch holds thousands of profile documents (acyclic dicts freed by reference
        # counting); the cyclic collector would only traverse them again and again
        # (measured: ~18% of the handler's CPU). It runs again right after the batch.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            events.dispatch(session, messages, settings)
        finally:
            if was_enabled:
                gc.enable()

    return handle
