"""The handler registry for the topics campaign consumes (see ``shared.registry``): one
batch per poll, runs of consecutive events in topic order, then the triggers they fired."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from sqlalchemy.orm import Session

from services.campaign import deleted_segments, projection, service, unmerges
from services.campaign.config import Settings
from services.campaign.repository import Campaigns
from shared import erasure_acks, topics
from shared.bus import BatchHandler, Inbound
from shared.event_views import AddressRegion
from shared.events import (
    ContactPolicyChangedEvent,
    EnvelopeBase,
    MessageReceiptRecordedEvent,
    OrderCore,
    OrderRecordedEvent,
    ProfileErasedEvent,
    ProfileMergedEvent,
    ProfileUnmergedEvent,
    ProfileUpdatedEvent,
    SegmentChangedEvent,
    SegmentDeletedEvent,
)
from shared.registry import Registry

Transitions = list[projection.Transition]


class ProjectedOrder(OrderCore):
    """What the orders projection reads of an order (a view: ``shared.event_views.check_view``)."""

    shipping: AddressRegion | None = None


class ProjectedOrderEvent(EnvelopeBase):
    """``order.recorded`` decoded as :class:`ProjectedOrder`: items, buyer and the rest of
    the address are not validated nor built (a third of the consumer's CPU went there)."""

    topic: ClassVar[str] = topics.ORDERS
    type: Literal["order.recorded"] = "order.recorded"
    data: ProjectedOrder


#: the event types this consumer decodes as views
VIEWS = [ProjectedOrderEvent]


@dataclass(frozen=True)
class PollBatch:
    """What every handler of one poll batch may need."""

    settings: Settings
    #: trigger types of the armed triggered campaigns
    armed: frozenset[str | None]


def apply_orders(session: Session, messages: list[Inbound], batch: PollBatch) -> Transitions:
    return projection.apply_orders(
        session, [m.event for m in messages], detect_first_purchase="first_purchase" in batch.armed
    )


def apply_receipts(session: Session, messages: list[Inbound], batch: PollBatch) -> Transitions:
    projection.apply_receipts(session, [m.event for m in messages])
    return []


def record_deletions(session: Session, messages: list[Inbound], batch: PollBatch) -> Transitions:
    deleted_segments.record_deletions(session, [m.event for m in messages])
    return []


def apply_unmerges(session: Session, messages: list[Inbound], batch: PollBatch) -> Transitions:
    unmerges.apply_unmerges(session, [m.event for m in messages])
    return []


#: the audience projection's steps: one run of consecutive events of these five types
audience = projection.AUDIENCE.step
by_customer = projection.note_customer

HANDLERS: Registry[PollBatch] = Registry(
    {
        SegmentChangedEvent: audience(projection.apply_segment_change, note=by_customer),
        ContactPolicyChangedEvent: audience(projection.apply_contact_policy, note=by_customer),
        ProfileErasedEvent: audience(projection.apply_erasure, note=by_customer),
        ProfileMergedEvent: audience(projection.apply_merge, note=projection.note_merge),
        ProfileUpdatedEvent: audience(projection.apply_profile_update, note=by_customer),
        SegmentDeletedEvent: record_deletions,
        ProfileUnmergedEvent: apply_unmerges,
        OrderRecordedEvent: apply_orders,
        MessageReceiptRecordedEvent: apply_receipts,
    }
)


def make_batch_handler(settings: Settings) -> BatchHandler:
    """Apply a poll batch to the projections, then fire the triggers it caused."""

    def handle(session: Session, messages: list[Inbound]) -> None:
        campaigns = Campaigns(session).armed_triggered()
        batch = PollBatch(settings, frozenset((c.trigger or {}).get("type") for c in campaigns))
        transitions = [t for found in HANDLERS.dispatch(session, messages, batch) for t in found]
        erasure_acks.acknowledge(session, "campaign", messages)
        if campaigns:
            service.fire_triggers(session, transitions, settings, campaigns)

    return handle
