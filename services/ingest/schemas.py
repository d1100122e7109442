"""Request and response models. The ``*In`` models document what callers send: the API
reads bodies itself and applies :mod:`services.ingest.validation` (the same rules as the
raw Kafka topics and the CSV import), so their descriptions state every rule."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.ingest.validation import INTERACTION_REQUIREMENTS, RULES
from shared.events import UtcDateTime

R = RULES


class ItemIn(BaseModel):
    sku: str | None = Field(None, description="max 128 characters")
    name: str | None = None
    category: str | None = None
    brand: str | None = None
    unit_price: str | None = Field(None, description=R["money"])
    list_price: str | None = Field(None, description=R["money"])
    quantity: int = Field(1, description="1..max_item_quantity (default 100,000)")


class BuyerIn(BaseModel):
    name: str | None = Field(None, description=R["text"])
    mobile: str | None = Field(None, description=R["mobile"])
    email: str | None = Field(None, description="lower-cased domain; must look like an address")
    phone: str | None = Field(None, description=R["mobile"])
    wechat: str | None = None
    qq: str | None = Field(None, description="5-12 digits")


class AddressIn(BaseModel):
    province: str | None = Field(None, description=R["region"])
    city: str | None = Field(None, description=R["region"])
    district: str | None = None
    address: str | None = Field(None, description="max 500 characters")
    recipient: str | None = None
    mobile: str | None = Field(None, description=R["mobile"])
    postal_code: str | None = None


class OrderIn(BaseModel):
    """An order as an outside system sends it (REST body, raw Kafka value, CSV row)."""

    model_config = ConfigDict(
        json_schema_extra={
            "description": "An order: the latest state of it. "
            + R["order_versions"]
            + " "
            + R["limits"]
        }
    )

    order_id: str = Field(description="max 128 characters; " + R["text"])
    customer_id: str = Field(description="the partitioning key downstream")
    status: str = Field(description=R["status"])
    created_at: datetime | str = Field(description=R["timestamp"])
    paid_at: datetime | str | None = Field(None, description=R["timestamp"])
    updated_at: datetime | str | None = Field(
        None, description="orders versions of one order; " + R["timestamp"]
    )
    currency: str = Field(description=R["currency"])
    total_amount: str = Field(description=R["money"])
    refunded_amount: str | None = Field(None, description="may not exceed total_amount")
    discount_amount: str | None = None
    channel: str | None = Field(None, description="e.g. tmall, jd, app")
    shop_id: str | None = None
    promotion: str | None = None
    items: list[ItemIn] = Field(default_factory=list, description=R["limits"])
    buyer: BuyerIn | None = None
    shipping: AddressIn | None = None


class CustomerIn(BaseModel):
    """A customer's basic facet as one source knows it."""

    model_config = ConfigDict(
        json_schema_extra={
            "description": "Versions: identical content again is a duplicate; a record with an "
            "`updated_at` older than the newest stored one is kept but not published; otherwise "
            "the latest arrival becomes a new canonical event on crm.customers.v1."
        }
    )

    customer_id: str
    name: str | None = Field(None, description=R["text"])
    gender: str | None = Field(None, description="male/female/unknown (also m/f, 男/女, 保密)")
    birthday: str | None = Field(None, description="YYYY-MM-DD, not in the future")
    mobile: str | None = Field(None, description="shorthand for one entry of mobiles")
    mobiles: list[str] = Field(default_factory=list, description=R["mobile"])
    phones: list[str] = Field(default_factory=list, description=R["mobile"])
    email: str | None = Field(None, description="shorthand for one entry of emails")
    emails: list[str] = Field(default_factory=list)
    wechat: str | None = None
    qq: str | None = None
    company: str | None = None
    title: str | None = None
    industry: str | None = None
    address: AddressIn | None = None
    timezone: str | None = Field(None, description="IANA zone name")
    source: str | None = None
    verified: list[str] = Field(default_factory=list)
    updated_at: datetime | str | None = Field(None, description=R["timestamp"])
    attributes: dict[str, Any] = Field(default_factory=dict, description="max 8 KiB as JSON")


class InteractionIn(BaseModel):
    """A typed interaction: review, service ticket, return, complaint, dispute, campaign
    response."""

    model_config = ConfigDict(
        json_schema_extra={
            "description": "Required per kind: "
            + "; ".join(f"{k.value}: {v}" for k, v in INTERACTION_REQUIREMENTS.items())
            + ". Identical content again is a duplicate."
        }
    )

    interaction_id: str
    customer_id: str
    kind: Literal["review", "service_ticket", "return", "complaint", "dispute", "campaign_response"]
    occurred_at: datetime | str = Field(description=R["timestamp"])
    order_id: str | None = None
    rating: int | None = Field(None, description="1..5, required for a review")
    text: str | None = Field(None, description="max `max_text_length` (default 5,000)")
    stage: str | None = Field(None, description="pre_sale | in_sale | after_sale (售前/售中/售后)")
    status: str | None = None
    campaign_id: str | None = None
    channel: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class OrdersBatchIn(BaseModel):
    orders: list[OrderIn] = Field(description="1..5,000 orders; each is validated on its own")


class CustomersBatchIn(BaseModel):
    customers: list[CustomerIn] = Field(description="1..5,000 customers")


class InteractionsBatchIn(BaseModel):
    interactions: list[InteractionIn] = Field(description="1..5,000 interactions")


class ReasonRead(BaseModel):
    field: str
    code: str
    message: str


class RecordAccepted(BaseModel):
    """The outcome of one record."""

    status: Literal["accepted", "duplicate"]
    event_id: str | None = Field(None, description="the canonical event (accepted only)")
    sequence: int | None = Field(None, description="position in the event store")
    current: bool | None = Field(
        None, description="false: an older version, stored but not published"
    )
    warnings: list[ReasonRead] = Field(
        default_factory=list,
        description="descriptive fields dropped from the accepted record (invalid mobile, "
        "e-mail, address part, ...): field and code; see docs/ingest.md",
    )


class OrderAccepted(RecordAccepted):
    order_id: str


class CustomerAccepted(RecordAccepted):
    customer_id: str


class InteractionAccepted(RecordAccepted):
    interaction_id: str


class BatchItem(BaseModel):
    index: int
    id: str | None = None
    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None = None
    current: bool | None = None
    reasons: list[ReasonRead] = Field(default_factory=list)
    warnings: list[ReasonRead] = Field(
        default_factory=list, description="descriptive fields dropped from an accepted record"
    )


class BatchResult(BaseModel):
    accepted: int
    duplicate: int
    rejected: int
    results: list[BatchItem]


class ReplayRequest(BaseModel):
    from_sequence: int | None = Field(None, ge=1)
    to_sequence: int | None = Field(None, ge=1)
    since: datetime | None = Field(None, description="received at or after (timezone-aware)")
    until: datetime | None = None
    kinds: list[Literal["order", "customer", "interaction"]] | None = None


class ReplayResult(BaseModel):
    queued: int


class ImportRejectionRead(BaseModel):
    row: int = Field(
        description="record number in the file (the header is 1); for a line-item order "
        "spread over several rows, its first row"
    )
    order_id: str | None = None
    reasons: list[ReasonRead]


class ImportJobRead(BaseModel):
    job_id: str
    status: Literal["queued", "running", "completed", "failed"]
    filename: str | None = None
    encoding: str | None = None
    header_format: str | None = Field(None, description="ours | taobao | jd | shopify | mapped")
    rows_read: int
    accepted: int
    duplicate: int
    rejected: int
    warned: int = Field(
        0, description="accepted orders from which a descriptive field was dropped (warnings)"
    )
    error: str | None = None
    created_at: UtcDateTime
    started_at: UtcDateTime | None = None
    finished_at: UtcDateTime | None = None
    rejections: list[ImportRejectionRead] = Field(default_factory=list)
    warnings: list[ImportRejectionRead] = Field(
        default_factory=list,
        description="accepted rows with the fields dropped from them (same pages as rejections)",
    )
    next_cursor: str | None = Field(
        None, description="pass as `cursor` for more rejections and warnings"
    )


class OrderVersionRead(BaseModel):
    sequence: int = Field(description="position in the event store (arrival order)")
    version: str = Field(description="<version time in UTC>|<status rank>: what orders versions")
    current: bool = Field(description="published as the order's state when it arrived")
    source: str
    received_at: datetime
    event_id: str
    order: dict[str, Any] = Field(description="the order as validated and normalised")


class OrderHistoryRead(BaseModel):
    order_id: str
    customer_id: str | None
    current: dict[str, Any] = Field(description="the order's current state")
    versions: list[OrderVersionRead]
