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


def apply_audience(session: Session, messages: list[Inbound], batch: PollBatch) -> Transitions:
    for message in messages:
        if message.event_type == "profile.erased":
            # the deleted and re-keyed rows must not stay readable in SQLite's WAL
            message.checkpoint_after_commit = True
    transitions = projection.apply_audience_events(session, [m.event for m in messages])
    erasure_acks.acknowledge(session, "campaign", messages)
    return transitions


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


HANDLERS: Registry[PollBatch] = Registry(
    {
        # the audience projection: consecutive events of these five are one run, in order
        SegmentChangedEvent: apply_audience,
        ContactPolicyChangedEvent: apply_audience,
        ProfileErasedEvent: apply_audience,
        ProfileMergedEvent: apply_audience,
        ProfileUpdatedEvent: apply_audience,
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
        if campaigns:
            service.fire_triggers(session, transitions, settings, campaigns)

    return handle
