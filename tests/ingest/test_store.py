"""The event store, order versions, statistics and replay, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.ingest import erasure, intake_stats, replay, service
from services.ingest.app import MIGRATIONS
from services.ingest.committer import store_batches
from services.ingest.models import Base, StoredEvent
from services.ingest.repository import EventStore
from services.ingest.validation import Rules
from shared.db import PLATFORM_TABLES, Database, run_migrations
from shared.events import decode_event

RULES = Rules()
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    run_migrations(MIGRATIONS, db_url)
    database = Database.from_url(db_url)
    yield database
    database.dispose()


def order(order_id: str = "T1", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": "c-1",
        "status": "created",
        "created_at": "2026-11-01T10:00:00+08:00",
        "updated_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "199.00",
    }
    base.update(changes)
    return base


def accept(
    db: Database, records: list[Any], kind: str = "order", source: str = "rest"
) -> list[Any]:
    with db.unit_of_work() as session:
        return service.accept(session, kind, records, source=source, rules=RULES, now=NOW)


def outbox(db: Database) -> list[Any]:
    """What the relay would publish next: current versions past the watermark, then the
    outbox table (the event store is its own outbox)."""
    with db.sessions() as session:
        rows = replay.pending_events(session)
    return [(topic, decode_event(value)) for topic, _, value in rows]


def mark_published(db: Database) -> None:
    """What the relay does after the broker acknowledged everything."""
    with db.unit_of_work() as session:
        store = EventStore(session)
        assert store.advance_published(store.published_sequence(), store.last_sequence())
        session.execute(PLATFORM_TABLES.tables["outbox"].delete())


def test_migrations_match_the_models(db_url: str) -> None:
    run_migrations(MIGRATIONS, db_url)
    database = Database.from_url(db_url)
    try:
        with database.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        database.dispose()
    assert diffs == []


def test_order_versions_duplicate_newer_and_late(db: Database) -> None:
    first = accept(db, [order(status="paid", updated_at="2026-11-01T10:05:00+08:00")])[0]
    assert (first.status, first.current) == ("accepted", True)
    # the same version again: a duplicate; with another field different, a version conflict
    again = accept(db, [order(status="paid", updated_at="2026-11-01T10:05:00+08:00")])[0]
    assert again.status == "duplicate" and again.event_id is None
    other = accept(
        db, [order(status="paid", updated_at="2026-11-01T10:05:00+08:00", channel="other")]
    )[0]
    assert other.status == "rejected" and other.event_id is None
    assert [r.code for r in other.reasons] == ["version-conflict"]
    # a newer version (later updated_at) becomes the new canonical event
    newer = accept(db, [order(status="shipped", updated_at="2026-11-02T09:00:00+08:00")])[0]
    assert (newer.status, newer.current) == ("accepted", True)
    # an older version arriving late is stored but not published
    late = accept(db, [order(status="created", updated_at="2026-11-01T10:00:00+08:00")])[0]
    assert (late.status, late.current) == ("accepted", False)
    # the same updated_at with a later status is newer
    same_time = accept(db, [order(status="completed", updated_at="2026-11-02T09:00:00+08:00")])[0]
    assert same_time.current is True
    # the late version is a duplicate when it comes again
    assert (
        accept(db, [order(status="created", updated_at="2026-11-01T10:00:00+08:00")])[0].status
        == "duplicate"
    )

    published = [event.data.status.value for _, event in outbox(db)]
    assert published == ["paid", "shipped", "completed"]
    with db.sessions() as session:
        stored = session.execute(
            select(StoredEvent.version, StoredEvent.current).order_by(StoredEvent.sequence)
        ).all()
    assert len(stored) == 4
    assert [c for _, c in stored] == [True, True, False, True]


def test_a_batch_reports_each_record_and_bad_ones_never_block(db: Database) -> None:
    records: list[Any] = [
        order("B1"),
        order("B2", total_amount="NaN"),
        order("B1"),  # the same version twice in one batch
        "not an object",
        order("B3", status="paid", updated_at="2026-11-01T11:00:00+08:00"),
        order("B3", status="created", updated_at="2026-11-01T10:30:00+08:00"),  # older
    ]
    results = accept(db, records)
    assert [r.status for r in results] == [
        "accepted",
        "rejected",
        "duplicate",
        "rejected",
        "accepted",
        "accepted",
    ]
    assert results[1].reasons[0].code == "money.not_finite"
    assert results[1].id == "B2"
    assert [r.current for r in results if r.status == "accepted"] == [True, True, False]
    assert sorted(e.data.order_id for _, e in outbox(db)) == ["B1", "B3"]


def test_customers_and_interactions_versions(db: Database) -> None:
    customer = {"customer_id": "c-9", "name": "李四", "updated_at": "2026-11-01T00:00:00Z"}
    assert accept(db, [customer], "customer")[0].status == "accepted"
    assert accept(db, [customer], "customer")[0].status == "duplicate"
    changed = {**customer, "name": "李四四", "updated_at": "2026-11-02T00:00:00Z"}
    assert accept(db, [changed], "customer")[0].current is True
    stale = {**customer, "name": "旧名"}
    result = accept(db, [stale], "customer")[0]
    assert (result.status, result.current) == ("accepted", False)

    review = {
        "interaction_id": "i-1",
        "customer_id": "c-9",
        "kind": "review",
        "rating": 4,
        "occurred_at": "2026-11-03T00:00:00Z",
    }
    assert accept(db, [review], "interaction")[0].status == "accepted"
    assert accept(db, [review], "interaction")[0].status == "duplicate"
    topics = [t for t, _ in outbox(db)]
    assert topics == ["crm.customers.v1", "crm.customers.v1", "crm.interactions.v1"]


def test_stats_count_outcomes_by_source_and_reason(db: Database) -> None:
    accept(db, [order("S1"), order("S1"), order("S2", currency="XXX")], source="rest")
    accept(db, [order("S3", total_amount="1.234")], source="kafka")
    accept(
        db,
        [
            order("S4", status="created", updated_at="2026-11-01T10:30:00+08:00"),
            order("S4", status="paid", updated_at="2026-11-01T11:00:00+08:00"),
        ],
    )
    accept(db, [order("S4", status="created", updated_at="2026-11-01T10:15:00+08:00")])
    with db.sessions() as session:
        report = intake_stats.intake_stats(session, ["1h", "24h"], now=NOW + timedelta(minutes=5))
    hour = report["1h"]
    assert (hour["accepted"], hour["duplicate"], hour["rejected"]) == (4, 1, 2)
    assert hour["by_source"]["rest"]["rejected"] == 1
    assert hour["by_source"]["kafka"]["rejected"] == 1
    assert hour["rejected_by_reason"] == {"currency.unknown": 1, "money.scale": 1}
    assert hour["by_source"]["rest"]["reasons"]["accepted:late_version"] == 1
    with db.sessions() as session:
        later = intake_stats.intake_stats(session, ["1h"], now=NOW + timedelta(hours=2))
    assert later["1h"]["accepted"] == 0


def test_replay_requeues_current_versions_by_sequence_and_time(db: Database) -> None:
    accept(db, [order(f"R{i}") for i in range(5)])
    late = order(
        "R0", created_at="2026-10-30T00:00:00+08:00", updated_at="2026-10-31T00:00:00+08:00"
    )
    assert accept(db, [late])[0].current is False
    mark_published(db)
    assert outbox(db) == []
    with db.unit_of_work() as session:
        assert replay.replay(session, from_sequence=2, to_sequence=4) == 3
    assert [e.data.order_id for _, e in outbox(db)] == ["R1", "R2", "R3"]
    with db.unit_of_work() as session:
        assert replay.replay(session, since=NOW - timedelta(seconds=1)) == 5  # not the late one
        assert replay.replay(session, until=NOW - timedelta(seconds=1)) == 0
    with db.sessions() as session:
        assert session.execute(select(func.count()).select_from(StoredEvent)).scalar_one() == 6


def test_the_version_index_stops_a_second_writer_of_the_same_version(tmp_path: Path) -> None:
    """Two writers deciding on the same version: the unique index makes one of them retry."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    run_migrations(MIGRATIONS, url)
    db = Database.from_url(url)
    try:
        accept(db, [order("X1")])
        with db.sessions() as session:
            row = session.execute(select(StoredEvent)).scalar_one()
        with pytest.raises(IntegrityError), db.unit_of_work() as session:
            session.execute(
                StoredEvent.__table__.insert(),
                [
                    {
                        c: getattr(row, c)
                        for c in (
                            "event_id",
                            "kind",
                            "entity_id",
                            "version",
                            "current",
                            "customer_id",
                            "source",
                            "topic",
                            "envelope",
                            "received_at",
                        )
                    }
                ],
            )
    finally:
        db.dispose()


def test_a_version_stored_by_a_concurrent_writer_is_decided_again_as_a_duplicate(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica stores the same version between our read and our insert: the unique
    index refuses ours, and the retry finds it stored (a duplicate, not a failure)."""
    accept(db, [order("R1", status="paid", updated_at="2026-11-01T11:00:00+08:00")])
    real = EventStore.versions_of
    reads = []

    def stale_first_read(self: EventStore, kind: str, ids: Any) -> dict[str, set[str]]:
        reads.append(kind)
        return {} if len(reads) == 1 else real(self, kind, ids)

    monkeypatch.setattr(EventStore, "versions_of", stale_first_read)
    runtime: Any = SimpleNamespace(db=db, write_lock=contextlib.nullcontext())
    prepared = service.prepare(
        "order",
        [order("R1", status="paid", updated_at="2026-11-01T11:00:00+08:00")],
        source="rest",
        rules=RULES,
        now=NOW,
    )
    (results,) = store_batches(runtime, [prepared])
    assert len(reads) == 2
    assert results[0].status == "duplicate"
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoredEvent)) == 1

    monkeypatch.setattr(EventStore, "versions_of", lambda self, kind, ids: {})  # always stale
    with pytest.raises(IntegrityError):
        store_batches(runtime, [prepared])


def test_erasure_scrubs_stored_versions_and_pending_events(db: Database) -> None:
    personal = order(
        "E1",
        customer_id="c-erase",
        buyer={"name": "张三", "mobile": "13800138000", "email": "z@example.com"},
        shipping={
            "province": "浙江",
            "city": "杭州",
            "address": "文三路100号",
            "recipient": "张三",
            "mobile": "13800138000",
        },
    )
    accept(db, [personal])
    accept(
        db,
        [
            {
                "customer_id": "c-erase",
                "name": "张三",
                "mobile": "13800138000",
                "address": {"province": "浙江", "address": "文三路100号"},
            }
        ],
        "customer",
    )
    accept(db, [order("E2", customer_id="c-other", buyer={"name": "李四"})])
    with db.unit_of_work() as session:
        assert erasure.erase_customer(session, "c-erase") == 2
    with db.sessions() as session:
        stored = {
            row.entity_id: decode_event(row.envelope)
            for row in session.execute(select(StoredEvent)).scalars()
        }
    erased_order = stored["E1"].data
    assert erased_order.buyer is None
    assert erased_order.shipping.address is None and erased_order.shipping.mobile is None
    assert (erased_order.shipping.province, erased_order.shipping.city) == ("浙江省", "杭州市")
    assert erased_order.total_amount == Decimal("199.00")
    erased_customer = stored["c-erase"].data
    assert erased_customer.name is None and erased_customer.mobiles == []
    assert stored["E2"].data.buyer.name == "李四"
    pending = [event for _, event in outbox(db)]
    text = " ".join(e.model_dump_json() for e in pending)
    assert "13800138000" not in text and "张三" not in text
    assert "李四" in text


def test_records_of_an_erased_customer_arriving_later(db: Database) -> None:
    """What belongs to the erased relationship (data time before the erasure) is stored
    without personal data; a relationship begun after it is kept as sent."""
    with db.unit_of_work() as session:
        assert erasure.erase_customer(session, "c-gone", erased_at=NOW - timedelta(days=10)) == 0
        # erased again later: the later erasure counts
        erasure.erase_customer(session, "c-gone", erased_at=NOW - timedelta(days=5))
        erasure.erase_customer(session, "c-gone", erased_at=NOW - timedelta(days=20))
    buyer = {"name": "张三", "mobile": "13800138000"}
    late = order(  # placed before the erasure, arriving after it
        "L1",
        customer_id="c-gone",
        created_at="2026-11-10T10:00:00+08:00",
        buyer=buyer,
        updated_at="2026-11-10T10:00:00+08:00",
    )
    fresh = order(  # placed after it: a new relationship
        "L2",
        customer_id="c-gone",
        created_at="2026-11-20T10:00:00+08:00",
        buyer=buyer,
        updated_at="2026-11-20T10:00:00+08:00",
    )
    other = order(
        "L3",
        customer_id="c-stays",
        created_at="2026-11-10T10:00:00+08:00",
        updated_at="2026-11-10T10:00:00+08:00",
        buyer=buyer,
    )
    results = accept(db, [late, fresh, other])
    assert [r.status for r in results] == ["accepted"] * 3
    review = {
        "interaction_id": "R1",
        "customer_id": "c-gone",
        "kind": "review",
        "rating": 1,
        "text": "张三的差评",
        "occurred_at": "2026-11-01T10:00:00+08:00",
    }
    accept(db, [review], "interaction")
    with db.sessions() as session:
        stored = {
            row.entity_id: decode_event(row.envelope)
            for row in session.execute(select(StoredEvent)).scalars()
        }
    assert stored["L1"].data.buyer is None
    assert stored["L1"].data.total_amount == Decimal("199.00")  # the facts stay
    assert stored["L2"].data.buyer is not None and stored["L2"].data.buyer.name == "张三"
    assert stored["L3"].data.buyer is not None
    assert stored["R1"].data.text is None
    published = {e.data.order_id: e for _, e in outbox(db) if hasattr(e.data, "order_id")}
    assert published["L1"].data.buyer is None  # what goes to Kafka is the scrubbed version


def test_the_store_is_its_own_outbox_with_a_published_watermark(db: Database) -> None:
    """Each record is written once: the relay publishes current versions past a watermark;
    a replay resets it, and a relay that published meanwhile cannot move it back."""
    accept(db, [order("W1"), order("W2")])
    late = order(
        "W1", created_at="2026-10-30T00:00:00+08:00", updated_at="2026-10-31T00:00:00+08:00"
    )
    assert accept(db, [late])[0].current is False
    table = PLATFORM_TABLES.tables["outbox"]
    with db.sessions() as session:
        assert session.execute(select(func.count()).select_from(table)).scalar_one() == 0
        store = EventStore(session)
        assert store.published_sequence() == 0
        assert [row[0] for row in store.unpublished(0, 100)] == [1, 2]  # not the late one
        assert store.unpublished(0, 1)[0][2] == "c-1"  # keyed by customer
    mark_published(db)
    assert outbox(db) == []
    accept(db, [order("W3")])
    assert [e.data.order_id for _, e in outbox(db)] == ["W3"]
    with db.unit_of_work() as session:
        store = EventStore(session)
        seen = store.published_sequence()
        store.reset_published(0)  # an emptied broker: everything current goes again
        # a relay that read the old watermark before the reset must not undo it
        assert store.advance_published(seen, store.last_sequence()) is False
    assert [e.data.order_id for _, e in outbox(db)] == ["W1", "W2", "W3"]
    with db.unit_of_work() as session:
        store = EventStore(session)
        assert store.advance_published(0, 2) is True
        assert store.published_sequence() == 2
    assert [e.data.order_id for _, e in outbox(db)] == ["W3"]
