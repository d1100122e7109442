"""Profile tables. The profile itself is one JSON document (``doc``) per surviving profile,
with the fields searched on copied into indexed columns; side tables index what is looked
up by value (aliases, contact points, tags, segment memberships, orders, interactions)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import BigIntPK, make_metadata
from shared.erasure import TOMBSTONE_KEY_LENGTH


class Base(DeclarativeBase):
    metadata = make_metadata()


class Profile(Base):
    """One unified customer (the survivor of any merges), keyed by its customer id."""

    __tablename__ = "profiles"

    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    doc: Mapped[str] = mapped_column(Text)
    province: Mapped[str | None] = mapped_column(String(50), index=True)
    city: Mapped[str | None] = mapped_column(String(50), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProfileScores(Base):
    """The latest scores and memberships of a profile (from segment.changed), kept apart
    from the document: a segment change then rewrites this small row, not the profile."""

    __tablename__ = "profile_scores"

    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    scores: Mapped[str] = mapped_column(Text)
    lifecycle_stage: Mapped[str | None] = mapped_column(String(30), index=True)
    rfm_segment: Mapped[str | None] = mapped_column(String(50), index=True)


class ProfileAlias(Base):
    """Every customer id we know, mapped to the profile it belongs to (itself unless merged)."""

    __tablename__ = "profile_aliases"

    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), index=True)


class ContactPoint(Base):
    """A normalised contact (E.164 mobile, lower-case email) seen on a customer id."""

    __tablename__ = "contact_points"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[str] = mapped_column(String(320), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_contact_points_customer_id", "customer_id"),)


class ProfileTag(Base):
    """A tag on a profile, manual or from a rule (``source``: ``manual`` or ``rule``)."""

    __tablename__ = "profile_tags"

    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)
    source: Mapped[str] = mapped_column(String(10), primary_key=True)

    __table_args__ = (Index("ix_profile_tags_tag", "tag"),)


class TagRule(Base):
    """A rule that tags every profile it matches, re-evaluated as profiles change."""

    __tablename__ = "tag_rules"

    rule_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), unique=True)
    rule: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProfileSegment(Base):
    """A current segment membership of a profile (from the latest segment change)."""

    __tablename__ = "profile_segments"

    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    segment: Mapped[str] = mapped_column(String(100), primary_key=True)

    __table_args__ = (Index("ix_profile_segments_segment", "segment"),)


class ProfileOrder(Base):
    """The newest version seen of one order and what it contributes to the transaction facet."""

    __tablename__ = "profile_orders"

    order_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), index=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(40))
    contribution: Mapped[str] = mapped_column(Text)


class ProfileInteraction(Base):
    """An interaction (review, ticket, return, complaint, dispute) counted once."""

    __tablename__ = "profile_interactions"

    interaction_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), index=True)
    customer_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(30))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    summary: Mapped[str] = mapped_column(Text)


class Tombstone(Base):
    """An erased customer id, kept only as its ``shared.erasure.tombstone_key``, so
    replays cannot restore it."""

    __tablename__ = "tombstones"

    customer_hash: Mapped[str] = mapped_column(String(TOMBSTONE_KEY_LENGTH), primary_key=True)
    erasure_id: Mapped[str] = mapped_column(String(36))
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Who did what to which profile: merges, edits, policy changes, erasures."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200), index=True)
    detail: Mapped[str] = mapped_column(Text)


class MergeRecord(Base):
    """Every merge, automatic or manual: survivor, merged ids, rule and actor."""

    __tablename__ = "merges"

    merge_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(String(200), index=True)
    merged_ids: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(100))
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    """A managed API key (profile owns them): its newest record (``shared.apikeys.
    ApiKeyState`` as JSON: the secret only as a hash) and when it was last seen used."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    record: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SubjectExport(Base):
    """A subject-access export across the services: profile's own section at once, the
    other services' parts as they answer (``shared.exports``). Holds personal data: an
    erasure of the person deletes it."""

    __tablename__ = "subject_exports"

    export_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), index=True)
    customer_ids: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    requested_by: Mapped[str] = mapped_column(String(100))
    #: {"profile": {...}, "ingest": {...}, ...}: the sections received so far
    sections: Mapped[str] = mapped_column(Text)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MergeSnapshot(Base):
    """A merged-away profile as it was just before a merge (document and customer ids):
    what an unmerge gives back to it."""

    __tablename__ = "merge_snapshots"

    merge_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    doc: Mapped[str] = mapped_column(Text)
    customer_ids: Mapped[str] = mapped_column(Text)


class ErasureAck(Base):
    """One part (customer id) of an erasure at one applying service: pending while
    ``applied_at`` is empty, applied once the service acknowledged it
    (``shared.erasure_acks``). Holds no customer id, nor its digest."""

    __tablename__ = "erasure_acks"

    erasure_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    service: Mapped[str] = mapped_column(String(20), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_erasure_acks_pending", "applied_at", "requested_at"),)
