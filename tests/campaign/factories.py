"""Builders for the campaign tests: settings and the events campaign consumes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from devtools.testing import unique
from services.campaign import service
from services.campaign.config import Settings
from services.campaign.handlers import make_batch_handler
from services.campaign.models import Entry
from services.campaign.projection import apply_audience_events
from services.campaign.schemas import CampaignCreate
from shared.bus import Inbound
from shared.db import Database
from shared.events import (
    ContactPolicy,
    ContactPolicyChangedEvent,
    MessageRequestedEvent,
    Order,
    OrderRecordedEvent,
    ProfileMergedEvent,
    ProfileMergedPayload,
    ScoreSnapshot,
    SegmentChangedEvent,
    SegmentChangedPayload,
)
from tests.conftest import ADMIN_KEY, outbox_events

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def settings(tmp_path: Path | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "run_consumer": False,
        "launch_chunk_size": 3,
    }
    if tmp_path is not None:
        values["data_dir"] = tmp_path
    values.update(overrides)
    return Settings(**values)


def broker_settings(
    broker: Any, namespace: str, sqlite_url: str, tmp_path: Path, **overrides: Any
) -> Settings:
    """Settings for a service with its consumer on the test broker and a fresh group."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "topic_namespace": namespace,
        "data_dir": tmp_path,
        "database_url": sqlite_url,
        "api_key": ADMIN_KEY,
        "consumer_group": unique("g"),
        "run_consumer": True,
    }
    values.update(overrides)
    return Settings(**values)


def segment_event(
    customer_id: str,
    *,
    lifecycle: str = "active",
    previous_lifecycle: str | None = None,
    segments: list[str] | None = None,
    entered: list[str] | None = None,
    rfm_segment: str = "champions",
    r: int = 5,
    f: int = 5,
    m: int = 5,
    as_of: datetime = NOW,
    removed: bool = False,
) -> SegmentChangedEvent:
    current = ScoreSnapshot(
        recency_days=3,
        frequency=f,
        monetary=Decimal("100.00") * m,
        currency="CNY",
        r_score=r,
        f_score=f,
        m_score=m,
        rfm_code=f"{r}{f}{m}",
        rfm_segment=rfm_segment,
        lifecycle_stage=lifecycle,
        value_quadrant="premium",
    )
    previous = ScoreSnapshot(lifecycle_stage=previous_lifecycle) if previous_lifecycle else None
    return SegmentChangedEvent(
        source="segment",
        key=customer_id,
        data=SegmentChangedPayload(
            customer_id=customer_id,
            policy_version=1,
            as_of=as_of,
            previous=previous,
            current=None if removed else current,
            segments=segments or [],
            segments_entered=entered or [],
            removed=removed,
        ),
    )


def policy_event(
    customer_id: str,
    channels: dict[str, bool] | None = None,
    **fields: Any,
) -> ContactPolicyChangedEvent:
    consents = {c: {"consented": v} for c, v in (channels or {"sms": True}).items()}
    return ContactPolicyChangedEvent(
        source="profile",
        key=customer_id,
        data=ContactPolicy.model_validate(
            {"customer_id": customer_id, "channels": consents, **fields}
        ),
    )


def order_event(
    order_id: str,
    customer_id: str,
    paid_at: datetime | None,
    amount: str = "100.00",
    status: str = "paid",
    refunded: str = "0",
    updated_at: datetime | None = None,
) -> OrderRecordedEvent:
    created = paid_at or NOW
    return OrderRecordedEvent(
        source="ingest",
        key=customer_id,
        # recorded by ingest when this version happened (first_purchase's lookback)
        occurred_at=updated_at or paid_at or created,
        data=Order(
            order_id=order_id,
            customer_id=customer_id,
            status=status,  # type: ignore[arg-type]
            created_at=created,
            paid_at=paid_at,
            updated_at=updated_at or paid_at or created,
            currency="CNY",
            total_amount=Decimal(amount),
            refunded_amount=Decimal(refunded),
        ),
    )


def merge_event(
    survivor_id: str, merged_ids: list[str], merge_id: str = "m1"
) -> ProfileMergedEvent:
    return ProfileMergedEvent(
        source="profile",
        key=survivor_id,
        data=ProfileMergedPayload(
            survivor_id=survivor_id, merged_ids=merged_ids, reason="mobile", merge_id=merge_id
        ),
    )


def make_campaign(db: Database, **overrides: Any) -> str:
    body: dict[str, Any] = {
        "name": "winter care",
        "purpose": "care",
        "audience": {"segment_id": "s1"},
        "channels": ["sms", "email"],
        "content": {"template": "{{city}} hello {{coupon}}", "variables": {"coupon": "C10"}},
        "holdout_share": 0.0,
        "conversion_window_days": 7,
    }
    body.update(overrides)
    with db.unit_of_work() as session:
        return service.create_campaign(session, CampaignCreate.model_validate(body)).campaign_id


def feed(db: Database, events: list[Any]) -> None:
    with db.unit_of_work() as session:
        apply_audience_events(session, events)


def consume(db: Database, events: list[Any], **overrides: Any) -> None:
    """Run the consumer's batch handler on events (one poll batch), as the consumer loop would."""
    handler = make_batch_handler(settings(**overrides))
    messages = [
        Inbound("t", 0, i, e.key, b"", e.type, str(e.event_id), e) for i, e in enumerate(events)
    ]
    with db.unit_of_work() as session:
        handler(session, messages)


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block (an executemany is one)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def outbox(db: Database) -> list[MessageRequestedEvent]:
    events = outbox_events(db)
    assert all(isinstance(e, MessageRequestedEvent) for e in events)
    return events  # type: ignore[return-value]


def entries(db: Database, campaign_id: str) -> dict[str, Entry]:
    with db.sessions() as session:
        rows = session.scalars(select(Entry).where(Entry.campaign_id == campaign_id)).all()
    return {r.customer_id: r for r in rows}


def fixed(now: datetime = NOW) -> Any:
    return lambda: now
