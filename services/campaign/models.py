from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import BigIntPK, make_metadata
from shared.erasure import TOMBSTONE_KEY_LENGTH


class Base(DeclarativeBase):
    metadata = make_metadata()


class AudienceMember(Base):
    """What campaign knows of one customer, from crm.segments.v1 and crm.profiles.v1."""

    __tablename__ = "audience"

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # from segment.changed (the latest `to` snapshot)
    scores_as_of: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rfm_segment: Mapped[str | None] = mapped_column(String(50))
    lifecycle_stage: Mapped[str | None] = mapped_column(String(30))
    r_score: Mapped[int | None] = mapped_column(Integer)
    f_score: Mapped[int | None] = mapped_column(Integer)
    m_score: Mapped[int | None] = mapped_column(Integer)
    value_quadrant: Mapped[str | None] = mapped_column(String(30))
    recency_days: Mapped[int | None] = mapped_column(Integer)
    frequency: Mapped[int | None] = mapped_column(Integer)
    monetary_e4: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    segments: Mapped[list[str]] = mapped_column(JSON, default=list)
    # from profile.*
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    province: Mapped[str | None] = mapped_column(String(50))
    city: Mapped[str | None] = mapped_column(String(50))
    timezone: Mapped[str | None] = mapped_column(String(64))
    contact_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    policy_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ErasedCustomer(Base):
    """Tombstone of an erased customer (``profile.erased``): nothing brings them back.

    The customer id is personal data: only its ``shared.erasure.tombstone_key`` is kept.
    What the reports still need of an erased customer (orders, entries, receipts) is kept
    under that key too, so it still adds up without naming anyone.
    """

    __tablename__ = "erased_customers"

    customer_hash: Mapped[str] = mapped_column(String(TOMBSTONE_KEY_LENGTH), primary_key=True)
    # null for the customers erased before tombstones existed (an erased audience row)
    erasure_id: Mapped[str | None] = mapped_column(String(200))
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerOrder(Base):
    """The latest version of each order (for attribution and triggers), from crm.orders.v1."""

    __tablename__ = "customer_orders"

    order_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(30))
    valid: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_rank: Mapped[int] = mapped_column(Integer)
    net_amount_e4: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))

    __table_args__ = (Index("ix_customer_orders_customer", "customer_id", "paid_at"),)


class CustomerAlias(Base):
    """A customer id merged into another (``profile.merged``): its state lives with the survivor.

    Later events about a merged id follow it there: its orders count for the survivor, and
    its own audience events (a policy or snapshot published before the merge, delivered
    after it) are ignored.
    """

    __tablename__ = "customer_aliases"

    merged_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(String(200))
    merge_id: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ix_customer_aliases_survivor", "survivor_id"),)


class Receipt(Base):
    """A delivery receipt from a channel gateway (one row per message and status)."""

    __tablename__ = "receipts"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    campaign_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_receipts_campaign", "campaign_id", "status"),)


class Campaign(Base):
    __tablename__ = "campaigns"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20))
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    channels: Mapped[list[str]] = mapped_column(JSON)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON)
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    holdout_share: Mapped[float] = mapped_column(Float)
    conversion_window_days: Mapped[int] = mapped_column(Integer)
    reentry_allowed: Mapped[bool] = mapped_column(Boolean)
    cooldown_days: Mapped[int] = mapped_column(Integer)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    launched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_campaigns_status", "status", "next_run_at"),)


class LaunchRun(Base):
    """One launch of a campaign (a recurring campaign has one per run); resumable by cursor."""

    __tablename__ = "launch_runs"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the last customer id handled: a resumed launch continues after it
    cursor: Mapped[str | None] = mapped_column(String(200))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Entry(Base):
    """One customer entering a campaign: contacted, held out, or excluded with a reason.

    Unique per (campaign, customer, entry_no): a relaunch or a crash mid-launch writes a
    row at most once, in the same transaction as its message request in the outbox.
    """

    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(200))
    entry_no: Mapped[int] = mapped_column(Integer)
    run_no: Mapped[int] = mapped_column(Integer)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # sent | holdout | excluded
    outcome: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(String(30))
    message_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(20))
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    trigger_key: Mapped[str | None] = mapped_column(String(200))
    # False when a profile merge folded this entry into another entry of the same customer
    # and occasion (see merges.py): still a contact for the frequency cap, but the report
    # counts the customer once
    counted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    # the unique index (campaign_id first) also serves the per-campaign report queries
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", "entry_no"),
        Index("ix_entries_customer_sent", "customer_id", "outcome", "entered_at"),
    )


class MergedEntry(Base):
    """What an entry was before a profile merge re-keyed it (merges.py), kept until the
    merge is split back (unmerges.py), which restores it: the customer id, the entry
    number and whether it counted."""

    __tablename__ = "merged_entries"

    merge_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    entry_no: Mapped[int] = mapped_column(Integer)
    counted: Mapped[bool] = mapped_column(Boolean)


class TriggerSkip(Base):
    """A trigger occurrence a running campaign did not enter, with the reason.

    Keyed by a hash of customer and occurrence (``trigger_skips.occurrence_key``): a
    redelivered occurrence is counted once, and no customer id is kept (nothing here
    for an erasure to remove).
    """

    __tablename__ = "trigger_skips"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    occurrence_hash: Mapped[str] = mapped_column(String(TOMBSTONE_KEY_LENGTH), primary_key=True)
    # not_in_audience | reentry_not_allowed | cooldown | too_old
    reason: Mapped[str] = mapped_column(String(30))
    skipped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeletedSegment(Base):
    """A custom segment deleted (``segment.deleted``): campaigns aimed at it no
    longer launch."""

    __tablename__ = "deleted_segments"

    segment_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
