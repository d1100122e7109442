"""Request and response models of the campaign API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from services.campaign.rules import Rule
from services.campaign.targeting import CUSTOMER_VARIABLES, template_variables
from shared.events import Channel
from shared.schemas import RequestModel


class Purpose(StrEnum):
    care = "care"
    promotion = "promotion"
    interaction = "interaction"
    reactivation = "reactivation"
    payment_reminder = "payment_reminder"


class CampaignStatus(StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    running = "running"
    completed = "completed"
    cancelled = "cancelled"


class AudienceSpec(BaseModel):
    """Exactly one of: a segment (by id, from crm.segments.v1 memberships) or an inline rule."""

    model_config = ConfigDict(extra="forbid")

    segment_id: str | None = Field(None, max_length=200)
    # described in OpenAPI by the rule catalogue itself (its fields and their ops)
    rule: Rule | None = None

    @model_validator(mode="after")
    def _one(self) -> AudienceSpec:
        if (self.segment_id is None) == (self.rule is None):
            raise ValueError("give exactly one of segment_id or rule")
        return self


class Content(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        min_length=1,
        max_length=5000,
        description="text with {{ name }} placeholders: per-customer variables "
        f"({', '.join(sorted(CUSTOMER_VARIABLES))}) or keys of `variables`; "
        "{{ name | fallback }} renders the fallback text when the value is missing or empty",
    )
    template_id: str | None = Field(None, max_length=200, description="the gateway's template")
    variables: dict[str, str] = Field(
        default_factory=dict, description="campaign-wide values, e.g. a coupon code"
    )


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["now", "at", "recurring"] = "now"
    at: datetime | None = Field(None, description="`at`: when; `recurring`: the first run")
    every_hours: int | None = Field(None, ge=1, le=24 * 366, description="`recurring` only")
    until: datetime | None = Field(None, description="`recurring`: no run after this")

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        if self.type == "at" and self.at is None:
            raise ValueError("a schedule of type `at` needs `at`")
        if self.type == "recurring" and self.every_hours is None:
            raise ValueError("a recurring schedule needs `every_hours`")
        for value in (self.at, self.until):
            if value is not None and value.tzinfo is None:
                raise ValueError("times need a UTC offset")
        return self


class Trigger(BaseModel):
    """Enter customers automatically on a transition while the campaign runs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["lifecycle_transition", "first_purchase", "unpaid_order", "segment_entered"]
    from_stage: str | None = Field(None, alias="from", description="lifecycle_transition")
    to_stage: str | None = Field(None, alias="to", description="lifecycle_transition")
    older_than_hours: int | None = Field(None, ge=1, description="unpaid_order")
    lookback_hours: int | None = Field(
        None,
        ge=0,
        le=24 * 90,
        description="unpaid_order: also remind orders that were already older than "
        "older_than_hours when the campaign started, if created at most this long before that "
        "(default 24). first_purchase: fire only when the order arrived (was recorded by "
        "ingest) at most this long after the purchase (default 72; older ones, e.g. imported "
        "history, are skipped as too_old)",
    )
    segment_id: str | None = Field(None, description="segment_entered")

    @model_validator(mode="after")
    def _check(self) -> Trigger:
        if self.type == "lifecycle_transition" and not self.to_stage:
            raise ValueError("a lifecycle_transition trigger needs `to`")
        if self.type == "unpaid_order" and self.older_than_hours is None:
            raise ValueError("an unpaid_order trigger needs `older_than_hours`")
        if self.type == "segment_entered" and not self.segment_id:
            raise ValueError("a segment_entered trigger needs `segment_id`")
        return self


class Reentry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed: bool = Field(False, description="may a customer enter this campaign again")
    cooldown_days: int = Field(0, ge=0, le=3650, description="days between two entries")


class CampaignCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    purpose: Purpose
    audience: AudienceSpec | None = Field(
        None, description="required unless the campaign has a trigger (then: narrows it)"
    )
    channels: list[Channel] = Field(
        min_length=1, description="in fallback order: the first consented one is used"
    )
    content: Content
    schedule: Schedule = Field(default_factory=Schedule)
    trigger: Trigger | None = None
    holdout_share: float = Field(0.0, ge=0.0, le=0.9, description="share held out as control")
    conversion_window_days: int = Field(7, ge=1, le=365)
    reentry: Reentry = Field(default_factory=Reentry)

    @model_validator(mode="after")
    def _check(self) -> CampaignCreate:
        # each problem names its field (the error's ctx carries it into {field, code, message})
        if len(set(self.channels)) != len(self.channels):
            raise _problem("channels", "channels.repeated", "channels must not repeat")
        if self.audience is None and self.trigger is None:
            raise _problem(
                "audience", "audience.missing", "a campaign needs an audience, a trigger, or both"
            )
        unknown = (
            template_variables(self.content.template)
            - CUSTOMER_VARIABLES
            - set(self.content.variables)
        )
        if unknown:
            raise _problem(
                "content.template",
                "template.unknown_variable",
                f"unknown template variable(s): {', '.join(sorted(unknown))}",
            )
        return self


def _problem(field: str, code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, "{message}", {"field": field, "message": message})


class CampaignRead(BaseModel):
    campaign_id: str
    name: str
    purpose: Purpose
    status: CampaignStatus
    audience: dict[str, Any] | None
    channels: list[str]
    content: dict[str, Any]
    schedule: dict[str, Any]
    trigger: dict[str, Any] | None
    holdout_share: float
    conversion_window_days: int
    reentry: Reentry
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    launched_at: datetime | None
    ended_at: datetime | None


class StatusChange(RequestModel):
    status: Literal["draft", "scheduled", "completed", "cancelled"] = Field(
        description="`running` is reached through POST .../launch"
    )


class LaunchResult(BaseModel):
    campaign_id: str
    status: CampaignStatus
    run_no: int | None = Field(None, description="the launch run (recurring campaigns have many)")
    resumed: bool = Field(False, description="an interrupted launch was continued")
    already_launched: bool = Field(False, description="nothing new: the launch had finished")
    in_progress: bool = Field(
        False,
        description="a background launch (wait=false) is still running: the counts are "
        "what it has done so far",
    )
    targeted: int = 0
    sent: int = 0
    deferred: int = Field(0, description="sent with not_before (inside quiet hours)")
    holdout: int = 0
    excluded: dict[str, int] = Field(default_factory=dict)


class AudienceRead(BaseModel):
    customer_id: str
    rfm_segment: str | None
    lifecycle_stage: str | None
    r_score: int | None
    f_score: int | None
    m_score: int | None
    value_quadrant: str | None
    recency_days: int | None
    frequency: int | None
    segments: list[str]
    tags: list[str]
    province: str | None
    city: str | None
    contact_policy: dict[str, Any] | None
    erased: bool
    scores_as_of: datetime | None

    @classmethod
    def erased_customer(cls, customer_id: str) -> AudienceRead:
        """An erased customer: campaign keeps nothing of them but the erasure."""
        return cls(
            customer_id=customer_id,
            rfm_segment=None,
            lifecycle_stage=None,
            r_score=None,
            f_score=None,
            m_score=None,
            value_quadrant=None,
            recency_days=None,
            frequency=None,
            segments=[],
            tags=[],
            province=None,
            city=None,
            contact_policy=None,
            erased=True,
            scores_as_of=None,
        )


class GroupReport(BaseModel):
    customers: int
    converted: int
    conversion_rate: float | None
    conversion_rate_ci95: tuple[float, float] | None = Field(None, description="Wilson")
    revenue: str = Field(description="net paid amount of the orders in the window")
    revenue_per_customer: str | None
    returning_customers: int = Field(description="members who had bought before entering")
    returning_converted: int
    returning_customer_rate: float | None = Field(
        None, description="returning_converted / returning_customers"
    )


class Uplift(BaseModel):
    absolute: float | None = Field(None, description="treatment rate - holdout rate")
    absolute_ci95: tuple[float, float] | None = Field(None, description="Newcombe hybrid score")
    relative: float | None = Field(None, description="treatment rate / holdout rate - 1")
    relative_ci95: tuple[float, float] | None = Field(None, description="Katz log risk ratio")
    incremental_revenue_per_customer: str | None = None


class CampaignReport(BaseModel):
    campaign_id: str
    status: CampaignStatus
    final: bool = Field(description="false (provisional) while a conversion window is open")
    window_closes_at: datetime | None
    conversion_window_days: int
    as_of: datetime
    currency: str | None = Field(None, description="of the revenue figures; `mixed` if several")
    targeted: int
    excluded: dict[str, int]
    skipped_triggers: dict[str, int] = Field(
        default_factory=dict,
        description="trigger occurrences not entered, by reason: not_in_audience, "
        "reentry_not_allowed, cooldown, too_old (each occurrence once, however often "
        "delivered)",
    )
    holdout: int
    sent: int
    deferred: int
    delivered: int
    failed: int
    opened: int
    clicked: int
    unsubscribed: int
    treatment: GroupReport
    control: GroupReport
    uplift: Uplift
    revenue_per_targeted_customer: str | None = Field(
        None, description="treatment revenue / targeted (every customer the audience held)"
    )
    method: str


class CampaignUpdate(RequestModel):
    """A change to a draft or scheduled campaign: only the fields sent change (each whole);
    the result must be a valid campaign, checked as at creation."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    purpose: Purpose | None = None
    audience: AudienceSpec | None = None
    channels: list[Channel] | None = Field(None, min_length=1)
    content: Content | None = None
    schedule: Schedule | None = None
    trigger: Trigger | None = None
    holdout_share: float | None = Field(None, ge=0.0, le=0.9)
    conversion_window_days: int | None = Field(None, ge=1, le=365)
    reentry: Reentry | None = None


class EntryOutcome(StrEnum):
    sent = "sent"
    holdout = "holdout"
    excluded = "excluded"


class EntryRead(BaseModel):
    customer_id: str
    entry_no: int = Field(description="1 for a customer's first entry; more with re-entry")
    run_no: int
    entered_at: datetime
    outcome: EntryOutcome
    reason: str | None = Field(None, description="why excluded (e.g. no_consent, frequency_cap)")
    channel: str | None
    message_id: str | None
    counted: bool = Field(description="false when a profile merge folded it into another entry")
