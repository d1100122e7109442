from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.segment.policy import ScoringPolicy
from services.segment.rules import Rule
from shared.pagination import Page
from shared.schemas import RequestModel


class CustomerScoresRead(BaseModel):
    """A customer's scores as of ``as_of`` under policy ``policy_version``."""

    customer_id: str
    recency_days: int | None = Field(description="days since the last valid purchase")
    frequency: int = Field(description="valid orders in the RFM window")
    monetary: Decimal = Field(description="net paid amount in the RFM window")
    currency: str | None
    r_score: int | None
    f_score: int | None
    m_score: int | None
    rfm_code: str | None
    rfm_segment: str | None
    lifecycle_stage: str
    purchase_bucket: str | None
    funnel_bucket: str | None
    value_quadrant: str | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    order_count: int = Field(description="valid orders ever")
    total_spent: Decimal = Field(description="net paid amount ever")
    average_order_value: Decimal | None
    channels: list[str]
    categories: list[str]
    province: str | None
    city: str | None
    segments: list[str] = Field(description="custom segments the customer is in")
    policy_version: int
    as_of: datetime
    predictions: PredictionsRead | None = Field(
        None, description="predictive CLV (from the last fit run; with as_of, computed then)"
    )


class ClvSummaryRead(BaseModel):
    """lifetimes' summary_data_from_transaction_data (daily periods) for one customer."""

    customer_id: str
    frequency: int = Field(description="repeat purchase days")
    recency: int = Field(description="days from the first purchase day to the last")
    T: int = Field(description="days from the first purchase day to the observation day")
    monetary_value: Decimal = Field(description="mean daily value of the repeat purchase days")
    currency: str | None = Field(
        None,
        description="the currency of the customer's latest purchase: the summary covers only "
        "their purchases in it (as the CLV fit of that currency does)",
    )
    as_of: datetime = Field(description="the instant observed (UTC)")
    policy_version: int = Field(
        description="the scoring policy whose timezone draws the days: in force at as_of"
    )


class PolicyRead(BaseModel):
    version: int
    created_at: datetime | None
    policy: ScoringPolicy


class RescoringRead(BaseModel):
    policy_version: int
    as_of: datetime
    customers: int
    changed: int = Field(description="customers whose state changed (one event each)")
    refreshed_windows: int
    cut_points: dict[str, Any]
    seconds: float
    phases: dict[str, float] = Field(description="seconds per phase: refresh, read, score, write")


class PolicyWritten(BaseModel):
    version: int = Field(description="the version in force after the PUT")
    created: bool = Field(description="false: the policy was the one in force, nothing changed")
    rescoring: RescoringRead | None = Field(None, description="null when nothing changed")


class SegmentCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    segment_id: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9_\-]{0,99}$", description="default: a new uuid"
    )
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=1000)
    rule: Rule


class SegmentRead(BaseModel):
    segment_id: str
    name: str
    description: str | None
    rule: dict[str, Any]
    member_count: int
    created_at: datetime


class ReportRead(BaseModel):
    """One report: ``rows`` (shape per report, documented on each endpoint)."""

    report: str
    as_of: datetime
    policy_version: int
    rows: list[dict[str, Any]]


class ModelFitRead(BaseModel):
    """One model's maximum-likelihood fit."""

    model: str = Field(description="bgnbd or gamma_gamma")
    parameters: dict[str, float] = Field(
        description="BG/NBD: r, alpha, a, b; Gamma-Gamma: p, q, gamma"
    )
    log_likelihood: float
    customers: int = Field(description="customers the model was fitted on")
    converged: bool
    iterations: int
    message: str


class ClvFitRead(BaseModel):
    """A BG/NBD + Gamma-Gamma fit of one currency; numbers are published only when ``ok``."""

    fit_id: int
    currency: str
    status: Literal["ok", "insufficient_data", "not_converged"]
    reason: str | None = Field(description="why no numbers are published (status not ok)")
    as_of: datetime = Field(description="the observation time (end of the data window)")
    window_start: datetime | None = Field(description="the time of the currency's first purchase")
    customers: int
    repeat_customers: int
    bgnbd: ModelFitRead | None
    gamma_gamma: ModelFitRead | None
    horizon_months: int
    monthly_discount_rate: float
    fitted_at: datetime
    seconds: float


class PredictionsRead(BaseModel):
    """A customer's predictions, or ``status`` saying why there are none (then no numbers)."""

    status: Literal["ok", "insufficient_data", "not_converged", "not_fitted", "no_purchase"]
    reason: str | None = None
    currency: str | None = None
    fit_id: int | None = None
    as_of: datetime | None = Field(None, description="the time the predictions were computed for")
    p_alive: float | None = Field(None, description="probability the customer is still active")
    expected_purchases_30d: float | None = None
    expected_purchases_90d: float | None = None
    expected_purchases_365d: float | None = None
    expected_order_value: Decimal | None = None
    predicted_clv: Decimal | None = Field(
        None, description="discounted expected spend over horizon_months 30-day months"
    )
    predicted_clv_percentile: float | None = Field(
        None, description="share (0-100) of the currency's customers with a lower predicted CLV"
    )
    horizon_months: int | None = None
    monthly_discount_rate: float | None = None


class ClvRunRead(BaseModel):
    fits: list[ClvFitRead]
    rescoring: RescoringRead


class HoldoutBucketRead(BaseModel):
    frequency: str = Field(description="repeat purchase days in the calibration period (7+ pooled)")
    customers: int
    actual_purchases: float = Field(description="mean purchase days in the holdout period")
    predicted_purchases: float = Field(description="mean BG/NBD expectation for the holdout period")


class HoldoutCheckRead(BaseModel):
    holdout_from: datetime
    holdout_to: datetime
    holdout_days: int
    customers: int = Field(description="customers with a purchase in the calibration period")
    status: str
    reason: str | None
    calibration_fit: ModelFitRead | None = Field(
        description="BG/NBD fitted on the calibration period"
    )
    buckets: list[HoldoutBucketRead]
    actual_total: float | None = None
    predicted_total: float | None = None


class ClvReportRead(BaseModel):
    """Fitted parameters, a calibration / holdout check and the predicted CLV distribution."""

    currency: str | None
    fit: ClvFitRead | None = Field(description="the currency's latest fit")
    holdout: HoldoutCheckRead | None
    clv_distribution: dict[str, Any] | None = Field(
        description="customers, total, mean, quantiles, deciles (1 = highest) of the stored "
        "predicted CLV, p_alive_mean; null when the latest fit publishes no numbers"
    )


CustomerScoresRead.model_rebuild()


class SegmentUpdate(RequestModel):
    """Rename, re-describe or re-rule a custom segment (only the fields sent change)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=1000)
    rule: Rule | None = Field(None, description="a new rule: members are evaluated again now")


class SegmentDeletedRead(BaseModel):
    segment_id: str
    name: str
    deleted_at: datetime


class SegmentMembersPage(Page[str]):
    """A page of member ids; with ``as_of``, the members then and the policy version used;
    without, the stored members at the time the scores reads use and the current version."""

    as_of: datetime | None = None
    policy_version: int | None = None
