"""The event envelope and every payload model, as one union keyed on ``type``.

Events are immutable past-tense facts. Every event carries ``event_id``,
``type``, ``schema_version``, ``occurred_at``, ``source``, ``key`` (the
partitioning key: the customer id) and ``data``. JSON on the wire; money is a
Decimal written as a string. A breaking change to a payload gets a new
``type`` version, never an edit of an existing one.

The payloads come first, in the order the data flows: ingest's orders, customers and
interactions; profile's contact policy and profile changes; segment's changes; campaign's
messages and receipts; dead letters. Then the envelopes (one class per wire ``type``,
with its topic) and the ``Event`` union with its encoding.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, get_args

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from shared import clock, topics

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC (``shared.clock``: tests may move it)."""
    return clock.now()


def ensure_aware(value: datetime) -> datetime:
    """Treat a naive datetime (as SQLite returns them) as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: a datetime field of an API answer: naive values (read from SQLite) are UTC, so every
#: timestamp leaves with its offset
UtcDateTime = Annotated[datetime, AfterValidator(ensure_aware)]


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class OrderStatus(StrEnum):
    created = "created"
    paid = "paid"
    shipped = "shipped"
    completed = "completed"
    cancelled = "cancelled"
    refunded = "refunded"
    partially_refunded = "partially_refunded"


#: Statuses that count as a valid purchase (F and M). A partial refund still counts,
#: with its refunded amount taken off M.
VALID_PURCHASE_STATUSES = frozenset(
    {
        OrderStatus.paid,
        OrderStatus.shipped,
        OrderStatus.completed,
        OrderStatus.partially_refunded,
    }
)

#: Rank of a status in an order's life, used to order versions with equal ``updated_at``.
STATUS_RANK = {
    OrderStatus.created: 0,
    OrderStatus.paid: 1,
    OrderStatus.shipped: 2,
    OrderStatus.completed: 3,
    OrderStatus.partially_refunded: 4,
    OrderStatus.cancelled: 5,
    OrderStatus.refunded: 6,
}


class DataWarning(Payload):
    """What ingest reported about a record it accepted: a field it dropped (an invalid
    mobile, e-mail, address part, ...) or amounts that disagree; never the value."""

    field: str
    code: str


class OrderItem(Payload):
    sku: str | None = None
    name: str | None = None
    category: str | None = None
    brand: str | None = None
    unit_price: Decimal | None = None
    quantity: int = 1
    list_price: Decimal | None = None


class Buyer(Payload):
    name: str | None = None
    mobile: str | None = None
    email: str | None = None
    phone: str | None = None
    wechat: str | None = None
    qq: str | None = None


class Address(Payload):
    province: str | None = None
    city: str | None = None
    district: str | None = None
    address: str | None = None
    recipient: str | None = None
    mobile: str | None = None
    postal_code: str | None = None


class OrderCore(Payload):
    """The fields of an order that every consumer of ``order.recorded`` reads, with the rules
    derived from them. :class:`Order` is the whole record; a consumer that reads less decodes
    a view (a subclass adding only the fields it uses, see :func:`check_view`)."""

    order_id: str
    customer_id: str
    status: OrderStatus
    created_at: datetime
    paid_at: datetime | None = None
    updated_at: datetime | None = None
    currency: str
    total_amount: Decimal
    refunded_amount: Decimal = Decimal("0")

    @property
    def version_at(self) -> datetime:
        """The time that orders versions of this order (``updated_at``, else ``created_at``)."""
        return self.updated_at or self.paid_at or self.created_at

    def version_key(self) -> tuple[datetime, int]:
        """Sort key of this version: newer ``updated_at`` wins, then the later status."""
        return (self.version_at, STATUS_RANK[self.status])

    @property
    def is_valid_purchase(self) -> bool:
        return self.status in VALID_PURCHASE_STATUSES

    @property
    def net_amount(self) -> Decimal:
        """What the customer kept paying for: total less refunds, zero if not a purchase."""
        if not self.is_valid_purchase:
            return Decimal("0")
        return max(self.total_amount - self.refunded_amount, Decimal("0"))


class Order(OrderCore):
    """The canonical (validated, normalised) state of an order at ``updated_at``."""

    discount_amount: Decimal = Decimal("0")
    channel: str | None = None
    shop_id: str | None = None
    promotion: str | None = None
    items: list[OrderItem] = Field(default_factory=list)
    buyer: Buyer | None = None
    shipping: Address | None = None
    data_warnings: list[DataWarning] = Field(
        default_factory=list,
        description="fields ingest dropped from this order and amounts that disagree (codes in "
        "docs/ingest.md); profile reports them in data_quality",
    )


class Customer(Payload):
    """Basic facet of a customer as one source knows it."""

    customer_id: str
    name: str | None = None
    gender: str | None = None
    birthday: str | None = None
    mobiles: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    wechat: str | None = None
    qq: str | None = None
    company: str | None = None
    title: str | None = None
    industry: str | None = None
    address: Address | None = None
    timezone: str | None = None
    source: str | None = None
    verified: list[str] = Field(
        default_factory=list, description="contacts the source has verified (mobile/email values)"
    )
    updated_at: datetime | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    data_warnings: list[DataWarning] = Field(
        default_factory=list,
        description="fields ingest dropped from this record (codes in docs/ingest.md); profile "
        "reports them in data_quality",
    )


class InteractionKind(StrEnum):
    review = "review"
    service_ticket = "service_ticket"
    return_request = "return"
    complaint = "complaint"
    dispute = "dispute"
    campaign_response = "campaign_response"


class Interaction(Payload):
    interaction_id: str
    customer_id: str
    kind: InteractionKind
    occurred_at: datetime
    order_id: str | None = None
    rating: int | None = None
    text: str | None = None
    stage: Literal["pre_sale", "in_sale", "after_sale"] | None = None
    status: str | None = None
    campaign_id: str | None = None
    channel: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class Channel(StrEnum):
    sms = "sms"
    email = "email"
    wechat = "wechat"
    phone = "phone"
    app_push = "app_push"
    parcel_insert = "parcel_insert"


class ChannelConsent(Payload):
    consented: bool
    source: str | None = None
    at: datetime | None = None


class QuietHours(Payload):
    start: str = Field(description="HH:MM local time")
    end: str = Field(description="HH:MM local time")
    timezone: str = "Asia/Shanghai"


class ContactPolicy(Payload):
    customer_id: str
    channels: dict[Channel, ChannelConsent] = Field(default_factory=dict)
    do_not_disturb: bool = False
    quiet_hours: QuietHours | None = None
    max_contacts: int | None = None
    period_days: int = 30
    updated_at: datetime | None = None


class ProfileMergedPayload(Payload):
    survivor_id: str
    merged_ids: list[str]
    reason: str
    merge_id: str


class ProfileUnmergedPayload(Payload):
    """A merge was split back (``merge_id``): each of ``restored_ids`` is its own profile
    again, with the customer ids listed for it (their orders count for it again)."""

    merge_id: str
    survivor_id: str
    restored_ids: list[str]
    customer_ids: dict[str, list[str]] = Field(
        default_factory=dict, description="restored profile id -> its customer ids"
    )
    order_ids: dict[str, list[str]] = Field(
        default_factory=dict, description="restored profile id -> the orders that are its again"
    )
    contact_policies: dict[str, ContactPolicy] = Field(
        default_factory=dict,
        description="profile id (each restored one, and the survivor) -> its contact policy "
        "after the split, where it has one: consumers that keep policies per customer id take "
        "them from here (a restored id's own policy events were ignored while it was merged)",
    )


class ProfileErasedPayload(Payload):
    customer_id: str
    erasure_id: str
    requested_at: datetime
    part: int = Field(
        0, ge=0, description="which of the erasure's customer ids this is (0 to parts - 1)"
    )
    parts: int = Field(
        1, ge=1, description="how many customer ids (one event each) the erasure covers"
    )


class ErasureAppliedPayload(Payload):
    """A service applied one part of an erasure in its own database. No customer id (nor
    its digest): profile matches it to the erasure by ``erasure_id`` and ``part``."""

    erasure_id: str
    part: int = Field(ge=0)
    parts: int = Field(ge=1)
    service: str
    applied_at: datetime


class ProfileUpdatedPayload(Payload):
    """The slice of a profile other services target on: tags and region."""

    customer_id: str
    tags: list[str] = Field(default_factory=list)
    province: str | None = None
    city: str | None = None
    timezone: str | None = None


class ScoreSnapshot(Payload):
    recency_days: int | None = None
    frequency: int = 0
    monetary: Decimal = Decimal("0")
    currency: str | None = None
    r_score: int | None = None
    f_score: int | None = None
    m_score: int | None = None
    rfm_code: str | None = None
    rfm_segment: str | None = None
    lifecycle_stage: str | None = None
    purchase_bucket: str | None = None
    funnel_bucket: str | None = None
    value_quadrant: str | None = None
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None


class PredictionSnapshot(Payload):
    """A customer's predictive CLV from segment's last fit run of their currency."""

    fit_id: int
    currency: str
    as_of: datetime = Field(description="the observation time of the fit run")
    p_alive: float = Field(description="probability the customer is still active")
    expected_purchases_30d: float
    expected_purchases_90d: float
    expected_purchases_365d: float
    expected_order_value: Decimal
    predicted_clv: Decimal = Field(description="discounted expected spend over the fit's horizon")
    predicted_clv_percentile: float = Field(
        description="share (0-100) of the currency's customers with a lower predicted CLV"
    )


class SegmentChangedPayload(Payload):
    customer_id: str
    policy_version: int
    as_of: datetime
    previous: ScoreSnapshot | None = Field(None, alias="from")
    current: ScoreSnapshot | None = Field(None, alias="to")
    segments: list[str] = Field(default_factory=list, description="current memberships")
    segments_entered: list[str] = Field(default_factory=list)
    segments_left: list[str] = Field(default_factory=list)
    removed: bool = Field(
        False,
        description="the customer left scoring (erased, merged, or every order moved away)",
    )
    predictions: PredictionSnapshot | None = Field(
        None,
        description="predictive CLV as of the last fit run (absent: none published for the "
        "customer's currency, or removed); a prediction moving alone is not a change",
    )

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class SegmentDeletedPayload(Payload):
    """A custom segment was deleted: its members have left it (their own segment.changed
    events say so); campaigns aimed at it must not launch any more."""

    segment_id: str
    name: str
    deleted_at: datetime


class MessageRequestedPayload(Payload):
    message_id: str
    campaign_id: str
    customer_id: str
    channel: Channel
    fallback_channels: list[Channel] = Field(default_factory=list)
    template: str | None = None
    content: str
    variables: dict[str, Any] = Field(default_factory=dict)
    not_before: datetime | None = None


class ReceiptStatus(StrEnum):
    delivered = "delivered"
    failed = "failed"
    opened = "opened"
    clicked = "clicked"
    unsubscribed = "unsubscribed"


class MessageReceipt(Payload):
    message_id: str
    campaign_id: str | None = None
    customer_id: str
    channel: Channel | None = None
    status: ReceiptStatus
    at: datetime
    reason: str | None = None


class DeadLetter(Payload):
    """Where a rejected record sits, its shape and why, never its content: its key and
    value may hold personal data. The original stays on ``origin_topic`` at ``origin_partition``
    / ``origin_offset`` until that topic's retention (``crm deadletters show`` reads it
    from there, ``crm deadletters redrive`` writes it back); ``value_sha256`` tells that
    it is the same record."""

    origin_topic: str
    origin_partition: int
    origin_offset: int
    key_sha256: str | None = Field(
        None,
        description="hex SHA-256 of the record key as UTF-8 (of its base64 text when the "
        "key is not UTF-8); none when it had no key",
    )
    value_bytes: int = Field(description="the size of the record value in bytes")
    value_sha256: str = Field(description="hex SHA-256 of the record value's bytes")
    value_shape: Any = Field(
        None,
        description="the record's JSON structure with each value replaced by its type "
        '(a string by its length: "string(11)"), to see what was sent without its '
        "content; none when the value is not JSON",
    )
    error: str = Field(description="the reasons, with their codes; never a value")
    error_type: str
    attempts: int
    consumer_group: str
    failed_at: datetime


class _Envelope(BaseModel):
    """What every event carries around its ``data``; a subclass per wire type fixes
    ``type``, ``data`` and the topic."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    schema_version: int = SCHEMA_VERSION
    occurred_at: datetime = Field(default_factory=utcnow)
    source: str
    key: str

    #: the topic this event travels on (not a field: the wire format is unchanged)
    topic: ClassVar[str]


class OrderRecordedEvent(_Envelope):
    topic: ClassVar[str] = topics.ORDERS
    type: Literal["order.recorded"] = "order.recorded"
    data: Order


class CustomerRecordedEvent(_Envelope):
    topic: ClassVar[str] = topics.CUSTOMERS
    type: Literal["customer.recorded"] = "customer.recorded"
    data: Customer


class InteractionRecordedEvent(_Envelope):
    topic: ClassVar[str] = topics.INTERACTIONS
    type: Literal["interaction.recorded"] = "interaction.recorded"
    data: Interaction


class ContactPolicyChangedEvent(_Envelope):
    topic: ClassVar[str] = topics.PROFILES
    type: Literal["profile.contact_policy_changed"] = "profile.contact_policy_changed"
    data: ContactPolicy


class ProfileMergedEvent(_Envelope):
    topic: ClassVar[str] = topics.PROFILES
    type: Literal["profile.merged"] = "profile.merged"
    data: ProfileMergedPayload


class ProfileUnmergedEvent(_Envelope):
    topic: ClassVar[str] = topics.PROFILES
    type: Literal["profile.unmerged"] = "profile.unmerged"
    data: ProfileUnmergedPayload


class ProfileErasedEvent(_Envelope):
    topic: ClassVar[str] = topics.PROFILES
    type: Literal["profile.erased"] = "profile.erased"
    data: ProfileErasedPayload


class ErasureAppliedEvent(_Envelope):
    """Keyed by the erasure id (not a customer id)."""

    topic: ClassVar[str] = topics.ERASURES_APPLIED
    type: Literal["erasure.applied"] = "erasure.applied"
    data: ErasureAppliedPayload


class ProfileUpdatedEvent(_Envelope):
    topic: ClassVar[str] = topics.PROFILES
    type: Literal["profile.updated"] = "profile.updated"
    data: ProfileUpdatedPayload


class SegmentChangedEvent(_Envelope):
    topic: ClassVar[str] = topics.SEGMENTS
    type: Literal["segment.changed"] = "segment.changed"
    data: SegmentChangedPayload


class SegmentDeletedEvent(_Envelope):
    """Keyed by the segment id (not a customer id)."""

    topic: ClassVar[str] = topics.SEGMENTS
    type: Literal["segment.deleted"] = "segment.deleted"
    data: SegmentDeletedPayload


class MessageRequestedEvent(_Envelope):
    topic: ClassVar[str] = topics.CAMPAIGN_MESSAGES
    type: Literal["campaign.message_requested"] = "campaign.message_requested"
    data: MessageRequestedPayload


class MessageReceiptRecordedEvent(_Envelope):
    topic: ClassVar[str] = topics.CAMPAIGN_RECEIPTS
    type: Literal["campaign.receipt_recorded"] = "campaign.receipt_recorded"
    data: MessageReceipt


class DeadLetterRecordedEvent(_Envelope):
    topic: ClassVar[str] = topics.DEADLETTER
    type: Literal["deadletter.recorded"] = "deadletter.recorded"
    data: DeadLetter


Event = Annotated[
    OrderRecordedEvent
    | CustomerRecordedEvent
    | InteractionRecordedEvent
    | ContactPolicyChangedEvent
    | ProfileMergedEvent
    | ProfileUnmergedEvent
    | ProfileErasedEvent
    | ErasureAppliedEvent
    | ProfileUpdatedEvent
    | SegmentChangedEvent
    | SegmentDeletedEvent
    | MessageRequestedEvent
    | MessageReceiptRecordedEvent
    | DeadLetterRecordedEvent,
    Field(discriminator="type"),
]

#: the bare object each raw topic carries (outside producers write no envelope); the
#: envelope classes declare their topics themselves (``topic``)
RAW_RECORDS: dict[str, type[Payload]] = {
    topics.RAW_ORDERS: Order,
    topics.RAW_CUSTOMERS: Customer,
    topics.RAW_INTERACTIONS: Interaction,
}

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: wire type -> envelope class, built from the ``Event`` union (one list of events)
EVENT_TYPES: dict[str, type[_Envelope]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(Event)[0])
}


def encode_event(event: _Envelope) -> bytes:
    """Serialise an event to its wire form (JSON, money as strings, aliases used)."""
    return event.model_dump_json(by_alias=True).encode()


def decode_event(raw: bytes | str) -> Event:
    """Parse an event from its wire form; raises ``pydantic.ValidationError`` if invalid."""
    return EVENT_ADAPTER.validate_json(raw)


def event_to_dict(event: _Envelope) -> dict[str, Any]:
    """The JSON-compatible dict of an event (what goes on the wire)."""
    result: dict[str, Any] = orjson.loads(encode_event(event))
    return result


EnvelopeBase = _Envelope
