from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, LargeBinary, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import BigIntPK, make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata()


class StoredEvent(Base):
    """Every accepted record version, in arrival order: the durable raw event store.

    ``version`` identifies a version of one entity (unique per kind and entity); ``current``
    says whether it became the canonical event (published) or arrived late behind a newer one.
    """

    __tablename__ = "stored_events"

    sequence: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(80))
    current: Mapped[bool] = mapped_column(Boolean)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    source: Mapped[str] = mapped_column(String(40))
    topic: Mapped[str] = mapped_column(String(200))
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ux_stored_events_version", "kind", "entity_id", "version", unique=True),
    )


class IntakeCount(Base):
    """Records accepted / duplicate / rejected per minute, source, kind and reason."""

    __tablename__ = "intake_counts"

    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    reason: Mapped[str] = mapped_column(String(80), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ImportJob(Base):
    """A bulk CSV import and its progress."""

    __tablename__ = "import_jobs"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    encoding: Mapped[str | None] = mapped_column(String(20), nullable=True)
    header_format: Mapped[str | None] = mapped_column(String(20), nullable=True)
    options: Mapped[dict[str, object]] = mapped_column(JSON)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicate: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    #: accepted rows from which a descriptive field was dropped (with a warning)
    warned: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: the file's last line whose chunk is committed: a restarted job resumes after it
    last_line: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ImportRejection(Base):
    """One rejected CSV row, or one accepted with warnings (``outcome``): its line number and
    reasons (never the row's values)."""

    __tablename__ = "import_rejections"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    row_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(20), default="rejected", server_default="rejected")


class ErasedCustomer(Base):
    """An erased customer (``profile.erased``): the hash of the id and when it was erased.

    A record of theirs arriving later that belongs to the erased relationship (its data
    time is before the erasure: a late version, a re-sent export) is stored and published
    without personal data; one that begins after it (a new order) is a new relationship.
    """

    __tablename__ = "erased_customers"

    customer_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
