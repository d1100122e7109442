"""The consumer's handler registry: order versions and profile merges/erasures, one
transaction per poll (see ``shared.registry``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field
from sqlalchemy.orm import Session

from services.segment import per_event
from shared import erasure_acks, topics
from shared.bus import Inbound
from shared.event_views import AddressRegion
from shared.events import (
    ContactPolicyChangedEvent,
    EnvelopeBase,
    OrderCore,
    OrderRecordedEvent,
    Payload,
    ProfileErasedEvent,
    ProfileMergedEvent,
    ProfileUnmergedEvent,
    ProfileUpdatedEvent,
)
from shared.registry import Registry

Clock = Callable[[], datetime]


class ItemCategory(Payload):
    """What scoring reads of an order item (a view of ``OrderItem``)."""

    category: str | None = None


class ScoredOrder(OrderCore):
    """What ``per_event.order_row`` reads of an order (a view: ``shared.event_views.check_view``)."""

    channel: str | None = None
    items: list[ItemCategory] = Field(default_factory=list)
    shipping: AddressRegion | None = None


class ScoredOrderEvent(EnvelopeBase):
    """``order.recorded`` decoded as :class:`ScoredOrder`: buyer, item details and the rest
    of the address are not validated nor built."""

    topic: ClassVar[str] = topics.ORDERS
    type: Literal["order.recorded"] = "order.recorded"
    data: ScoredOrder


#: the event types this consumer decodes as views
VIEWS = [ScoredOrderEvent]


#: one step each, of one batch: the whole poll batch is applied in order and scored once
HANDLERS: Registry[Clock] = Registry(
    {
        OrderRecordedEvent: per_event.SCORING.step(per_event.apply_order),
        ProfileMergedEvent: per_event.SCORING.step(per_event.apply_merge),
        ProfileUnmergedEvent: per_event.SCORING.step(per_event.apply_unmerge),
        ProfileErasedEvent: per_event.SCORING.step(per_event.apply_erasure),
    },
    # contact policies and targeting attributes do not change scores
    ignores=[ContactPolicyChangedEvent, ProfileUpdatedEvent],
)


def make_batch_handler(clock: Clock) -> Callable[[Session, list[Inbound]], None]:
    """The consumer loop's batch handler, scoring as of ``clock()`` (injectable so tests
    can fix time), then acknowledging the erasures it applied."""

    def handle(session: Session, messages: list[Inbound]) -> None:
        HANDLERS.dispatch(session, messages, clock)
        erasure_acks.acknowledge(session, "segment", messages)

    return handle
