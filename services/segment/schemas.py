from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from services.segment.policy import ScoringPolicy
from services.segment.rules import Rule
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


class ClvSummaryRead(BaseModel):
    """lifetimes' summary_data_from_transaction_data (daily periods) for one customer."""

    customer_id: str
    frequency: int = Field(description="repeat purchase days")
    recency: int = Field(description="days from the first purchase day to the last")
    T: int = Field(description="days from the first purchase day to the observation day")
    monetary_value: Decimal = Field(description="mean daily value of the repeat purchase days")
    currency: str | None = None
    as_of: datetime


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
    version: int
    rescoring: RescoringRead


class SegmentCreate(RequestModel):
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
