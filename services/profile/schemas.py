"""Request and response models of the profile API."""

from __future__ import annotations

import re
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from services.profile.rules import FIELDS, parse_rule
from shared.events import Channel, ChannelConsent, QuietHours, UtcDateTime, ensure_aware
from shared.schemas import RequestModel
from shared.vocabulary import normalize_gender

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class AddressUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    province: str | None = None
    city: str | None = None
    district: str | None = None
    address: str | None = None
    postal_code: str | None = None


class ProfileUpdate(RequestModel):
    """An operator's edit. Each field given wins over derived data; ``null`` clears it.
    A contact list replaces the derived one; ``verified`` names the contacts verified."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    gender: str | None = None
    birthday: str | None = None
    company: str | None = None
    title: str | None = None
    industry: str | None = None
    wechat: str | None = None
    qq: str | None = None
    timezone: str | None = None
    address: AddressUpdate | None = None
    mobiles: list[str] | None = None
    phones: list[str] | None = None
    emails: list[str] | None = None
    verified: list[str] | None = Field(None, description="contacts in this edit that are verified")
    style: str | None = Field(None, description="subjective: the customer's style")
    contact_tolerance: str | None = Field(None, description="subjective: low / medium / high")
    membership_interest: bool | None = None
    points_interest: bool | None = None

    @field_validator("gender")
    @classmethod
    def _gender(cls, value: str | None) -> str | None:
        # one normalisation with ingest (shared.vocabulary): 男 is male from every entry point
        if value is None:
            return None
        gender = normalize_gender(value)
        if gender is None:
            # the code ingest reports for the same word (docs/ingest.md), not pydantic's
            raise PydanticCustomError(
                "gender.unknown", "is not male, female or unknown (男, 女, 保密, M, F, ...)"
            )
        return gender

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"{value!r} is not an IANA time zone") from exc
        return value


class TagsAdd(RequestModel):
    tags: list[str] = Field(min_length=1, max_length=100)

    @field_validator("tags")
    @classmethod
    def _clean(cls, value: list[str]) -> list[str]:
        cleaned = [t.strip() for t in value]
        if any(not t or len(t) > 100 for t in cleaned):
            raise ValueError("tags are 1-100 characters")
        return cleaned


class TagsRead(BaseModel):
    customer_id: str
    tags: list[str]
    manual: list[str]
    by_rule: list[str]


class TagCount(BaseModel):
    tag: str
    customers: int
    manual: int
    by_rule: int


class TagRuleCreate(RequestModel):
    tag: str = Field(min_length=1, max_length=100)
    rule: dict[str, Any] = Field(
        description="all / any / not over {field, op, value}; fields: " + ", ".join(FIELDS)
    )
    description: str | None = None

    @field_validator("rule")
    @classmethod
    def _valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        parse_rule(value)
        return value


class TagRuleRead(BaseModel):
    rule_id: str
    tag: str
    rule: dict[str, Any]
    description: str | None
    created_at: UtcDateTime


class ContactPolicyUpdate(RequestModel):
    """The whole contact policy of one customer (replaces the previous one)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(None, description="optional; must match the path")
    channels: dict[Channel, ChannelConsent] = Field(default_factory=dict)
    do_not_disturb: bool = False
    quiet_hours: QuietHours | None = None
    max_contacts: int | None = Field(None, ge=0)
    period_days: int = Field(30, ge=1, le=366)

    @field_validator("channels")
    @classmethod
    def _consent_times(cls, value: dict[Channel, ChannelConsent]) -> dict[Channel, ChannelConsent]:
        # a consent time without an offset is UTC, as every time this API answers with
        return {
            channel: consent
            if consent.at is None
            else consent.model_copy(update={"at": ensure_aware(consent.at)})
            for channel, consent in value.items()
        }

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, value: QuietHours | None) -> QuietHours | None:
        if value is not None:
            if not (_HHMM.match(value.start) and _HHMM.match(value.end)):
                raise ValueError("quiet hours are HH:MM")
            try:
                ZoneInfo(value.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"{value.timezone!r} is not an IANA time zone") from exc
        return value


class MergeRequest(RequestModel):
    merge_ids: list[str] = Field(min_length=1, description="customer ids merged into this one")
    reason: str = Field("manual merge", max_length=200)


class MergeResult(BaseModel):
    merge_id: str
    survivor_id: str
    merged_ids: list[str]


class ErasureResult(BaseModel):
    erasure_id: str
    erased_at: UtcDateTime
    customer_ids: int = Field(description="how many customer ids (merged ones included) erased")
    pending_services: list[str] = Field(
        description="the services that have yet to apply the erasure in their own database "
        "(follow GET /v1/erasures/{erasure_id})"
    )


class ErasureServiceRead(BaseModel):
    service: str
    status: Literal["applied", "pending"]
    parts_applied: int = Field(description="customer ids of the erasure this service applied")
    parts: int = Field(description="customer ids the erasure covers")
    applied_at: UtcDateTime | None = Field(description="when the last part was applied")


class PendingErasureRead(BaseModel):
    erasure_id: str
    requested_at: UtcDateTime
    pending_services: list[str]


class PendingErasuresRead(BaseModel):
    overdue_after_minutes: float = Field(
        description="the bound past which a pending erasure counts as overdue"
    )
    items: list[PendingErasureRead] = Field(description="oldest first")


class ProfileRead(BaseModel):
    """The unified profile (personal data masked unless the key has ``pii:read``).
    See docs/profile.md for every field."""

    customer_id: str
    merged_ids: list[str] = Field(description="customer ids merged into this profile")
    basic: dict[str, Any] = Field(
        description="name, gender, birthday, company, title, industry, wechat, qq, timezone, "
        "address {province, city, district, address, postal_code}, mobiles, phones, emails"
    )
    subjective: dict[str, Any] = Field(
        description="derived {top_categories, top_brands, price_band, discount_share, "
        "price_sensitivity, preferred_channel, purchase_hours}; entered {style, "
        "contact_tolerance, membership_interest, points_interest}"
    )
    transactions: dict[str, Any] = Field(
        description="order_count (distinct valid purchases: paid, shipped, completed, "
        "partially refunded), orders_placed, unpaid_orders, cancelled_orders, currency, "
        "total_spent, spent_by_currency, average_order_value; first_order_at / last_order_at: "
        "when the earliest / latest valid purchase was placed (its created_at; unpaid, "
        "cancelled and refunded orders do not count); first_purchase_at: the segment "
        "service's first purchase (earliest paid_at, else created_at, of a valid purchase) "
        "from the latest segment.changed, null until the customer is scored; refunds, "
        "complaints, disputes, returns, tickets, reviews, campaign_responses, "
        "last_interaction_at"
    )
    scores: dict[str, Any] = Field(
        description="from the latest segment.changed: rfm_segment, lifecycle_stage, r/f/m "
        "scores, rfm_code, value_quadrant, purchase_bucket, recency_days, frequency, "
        "monetary, policy_version, as_of"
    )
    segments: list[str] = Field(description="current segment memberships")
    tags: list[str]
    contact_policy: dict[str, Any]
    provenance: dict[str, Any] = Field(description="per field: source and seen_at")
    data_quality: dict[str, Any] = Field(
        description="completeness, missing, stale_fields, conflicts: {field, reason, value, "
        "source, alternatives}; reason sources_disagree (values other sources sent) or "
        "city_not_in_province (the address names a city of another province, with "
        "city_province)"
    )
    first_seen_at: UtcDateTime
    pii_masked: bool


class CustomerSummary(BaseModel):
    """One search result (personal data masked unless the key has ``pii:read``)."""

    customer_id: str
    name: str | None
    mobiles: list[str]
    emails: list[str]
    province: str | None
    city: str | None
    tags: list[str]
    segments: list[str]
    lifecycle_stage: str | None
    rfm_segment: str | None
    order_count: int
    total_spent: str
    currency: str | None


class AuditEntryRead(BaseModel):
    at: UtcDateTime
    actor: str = Field(description="the API key id, or identity-resolution")
    action: str = Field(
        description="merge, merge_refused, patch, tag, untag, contact_policy or erase"
    )
    subject: str = Field(description="the profile id, or erased:<erasure_id> after erasure")
    detail: dict[str, Any]


class AuditRead(BaseModel):
    customer_id: str = Field(description="the profile id (the survivor for a merged-away id)")
    audit: list[AuditEntryRead]


class ErasureAuditRead(BaseModel):
    erasure_id: str
    audit: list[AuditEntryRead]
    services: list[ErasureServiceRead] = Field(
        default_factory=list,
        description="per applying service: applied or pending (empty for erasures made "
        "before services acknowledged them)",
    )
    pending_services: list[str] = Field(default_factory=list)


class MergeRecordRead(BaseModel):
    merge_id: str
    survivor_id: str
    merged_ids: list[str]
    reason: str
    actor: str
    merged_at: UtcDateTime


class InteractionRead(BaseModel):
    """A consumed interaction as stored (its other fields as the event carried them)."""

    model_config = ConfigDict(extra="allow")

    interaction_id: str
    kind: str
    occurred_at: UtcDateTime


class ExportRead(BaseModel):
    """Everything held on one customer, unmasked."""

    exported_at: UtcDateTime
    profile: dict[str, Any] = Field(
        description="the profile exactly as GET /v1/customers/{id} answers it with pii:read"
    )
    customer_ids: list[str]
    orders: list[dict[str, Any]] = Field(
        description="the newest version of each order and what it contributes"
    )
    interactions: list[InteractionRead]
    merges: list[MergeRecordRead]
    audit: list[AuditEntryRead]


class SubjectExportRead(BaseModel):
    """A subject-access export across the four services and its progress."""

    export_id: str
    customer_id: str = Field(description="the profile (survivor of any merges)")
    customer_ids: list[str] = Field(description="every id merged into it: all were exported")
    status: Literal["collecting", "complete"]
    requested_at: UtcDateTime
    completed_at: UtcDateTime | None
    services: dict[str, Literal["done", "pending"]] = Field(
        description="per service: its section arrived (done) or not yet"
    )
    document: dict[str, dict[str, Any]] = Field(
        description="the sections received so far, by service: profile (profile, orders, "
        "interactions, merges, audit), ingest (every version of every order, customer "
        "record and interaction), segment (scores, segment memberships), campaign "
        "(audience, campaign entries, messages, receipts)"
    )


class UnmergeResult(BaseModel):
    merge_id: str
    survivor_id: str
    restored_ids: list[str] = Field(description="the profiles that are their own again")
