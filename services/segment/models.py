"""Segment tables. Money is kept as integers in 1/10,000 of the currency unit (``*_e4``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, SmallInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import BigIntPK, make_metadata
from shared.erasure import TOMBSTONE_KEY_LENGTH


class Base(DeclarativeBase):
    metadata = make_metadata()


class OrderState(Base):
    """The newest version of each order, as far as scoring needs it."""

    __tablename__ = "order_states"

    order_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20))
    version_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_rank: Mapped[int] = mapped_column(SmallInteger)
    valid: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    purchased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    net_e4: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str | None] = mapped_column(String(50))
    categories: Mapped[list[str]] = mapped_column(JSON)
    province: Mapped[str | None] = mapped_column(String(100))
    city: Mapped[str | None] = mapped_column(String(100))


class OrderVersion(Base):
    """Every version of every order ever received (valid time): ``as_of=T`` reads, per
    order, the newest version whose ``version_at`` (``updated_at``) is at or before T."""

    __tablename__ = "order_versions"

    order_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    status_rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20))
    valid: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    purchased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    net_e4: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str | None] = mapped_column(String(50))
    categories: Mapped[list[str]] = mapped_column(JSON)
    province: Mapped[str | None] = mapped_column(String(100))
    city: Mapped[str | None] = mapped_column(String(100))


class CustomerScore(Base):
    """Per-customer aggregates and the last published score snapshot."""

    __tablename__ = "customer_scores"

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # aggregates
    currency: Mapped[str | None] = mapped_column(String(3))
    order_count: Mapped[int] = mapped_column(Integer)
    total_spent_e4: Mapped[int] = mapped_column(BigInteger)
    # indexed: the day-boundary sweep (services/segment/sweep.py) finds whom a date moves
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    frequency: Mapped[int] = mapped_column(Integer)
    monetary_e4: Mapped[int] = mapped_column(BigInteger)
    window_oldest_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    channels: Mapped[list[str]] = mapped_column(JSON)
    categories: Mapped[list[str]] = mapped_column(JSON)
    province: Mapped[str | None] = mapped_column(String(100))
    city: Mapped[str | None] = mapped_column(String(100))
    aggregated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # snapshot
    recency_days: Mapped[int | None] = mapped_column(Integer)
    r_score: Mapped[int | None] = mapped_column(SmallInteger)
    f_score: Mapped[int | None] = mapped_column(SmallInteger)
    m_score: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_code: Mapped[str | None] = mapped_column(String(3))
    rfm_segment: Mapped[str | None] = mapped_column(String(30))
    lifecycle_stage: Mapped[str | None] = mapped_column(String(20))
    purchase_bucket: Mapped[str | None] = mapped_column(String(10))
    funnel_bucket: Mapped[str | None] = mapped_column(String(10))
    value_quadrant: Mapped[str | None] = mapped_column(String(20))
    segments: Mapped[list[str]] = mapped_column(JSON)
    #: published_state.state_hashes of the snapshot: the batch path compares it to find changes
    state_hash: Mapped[int | None] = mapped_column(BigInteger)
    policy_version: Mapped[int] = mapped_column(Integer)
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScoringPolicyVersion(Base):
    """Every version of the scoring policy; the highest is in force."""

    __tablename__ = "scoring_policies"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str | None] = mapped_column(String(500))


class CutPointSet(Base):
    """Cut points computed by a batch rescoring; the newest is applied to every event."""

    __tablename__ = "cut_points"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    policy_version: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class CustomSegment(Base):
    __tablename__ = "custom_segments"

    segment_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    member_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeletedSegmentId(Base):
    """A segment id that was deleted: it is not handed out again (campaigns aimed at it
    learned it is gone, and a new segment under the same id would silently retarget them)."""

    __tablename__ = "deleted_segment_ids"

    segment_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SegmentMember(Base):
    __tablename__ = "segment_members"

    segment_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_segment_members_customer", "customer_id"),)


class CustomerAlias(Base):
    """A merged customer id and the survivor its orders now count under."""

    __tablename__ = "customer_aliases"

    merged_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(String(200), index=True)
    merge_id: Mapped[str] = mapped_column(String(200))


class ErasedCustomer(Base):
    """Tombstone of an erased customer: orders created before the erasure are ignored.

    The customer id itself is personal data: only its ``shared.erasure.tombstone_key``
    is kept, and lookups hash the ids they are asked about.
    """

    __tablename__ = "erased_customers"

    customer_hash: Mapped[str] = mapped_column(String(TOMBSTONE_KEY_LENGTH), primary_key=True)
    erasure_id: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ClvFit(Base):
    """One BG/NBD + Gamma-Gamma fit of one currency's customers (services/segment/predictive.py).

    ``status``: ``ok`` (both models converged: predictions published), ``insufficient_data``
    (below the minimum customers, repeat buyers or history) or ``not_converged``; only an
    ``ok`` fit gives numbers.
    """

    __tablename__ = "clv_fits"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(500))
    #: the data window: purchases from ``window_start`` to the observation time ``as_of``
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    customers: Mapped[int] = mapped_column(Integer)
    repeat_customers: Mapped[int] = mapped_column(Integer)
    #: {"bgnbd": {parameters, log_likelihood, customers, converged, iterations, message},
    #:  "gamma_gamma": {...}} (clv_models.Fit.to_json)
    models: Mapped[dict[str, Any]] = mapped_column(JSON)
    horizon_months: Mapped[int] = mapped_column(Integer)
    monthly_discount_rate: Mapped[float]
    fitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float]

    __table_args__ = (Index("ix_clv_fits_currency_id", "currency", "id"),)


class CustomerPrediction(Base):
    """A customer's predictions from the latest ``ok`` fit of their currency (rules read them)."""

    __tablename__ = "customer_predictions"

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    fit_id: Mapped[int] = mapped_column(BigInteger, index=True)
    currency: Mapped[str] = mapped_column(String(3))
    p_alive: Mapped[float]
    expected_purchases_30d: Mapped[float]
    expected_purchases_90d: Mapped[float]
    expected_purchases_365d: Mapped[float]
    expected_order_value_e4: Mapped[int] = mapped_column(BigInteger)
    predicted_clv_e4: Mapped[int] = mapped_column(BigInteger)
    #: share of the currency's customers with a lower predicted CLV, 0-100
    predicted_clv_percentile: Mapped[float]
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
