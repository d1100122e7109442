"""Poison records on every topic a service consumes, through the real broker and the
running service (its own consumer loops), on both databases: each record that can never be
processed -- not UTF-8, not JSON, a JSON array, an envelope with NaN amounts, an event of a
type that does not belong on the topic -- is dead-lettered with its reason, and the loop goes
on to the next. In particular a NaN order on the customer topic does not become customer
``y`` (nor any record): the service's stores hold nothing afterwards.

Each case prints the figure it proves: records published, dead letters, records stored."""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, table

from devtools.testing import read_topic, unique
from shared import topics
from shared.bus import Publisher, ensure_topics
from tests.conftest import ADMIN_KEY, api_client

pytestmark = pytest.mark.kafka

#: the same poison on every enveloped topic
NAN_ORDER = (
    b'{"type": "order.recorded", "source": "hostile", "key": "y", "data": {"order_id": "o-y",'
    b' "customer_id": "y", "status": "paid", "created_at": "2026-11-01T10:00:00+08:00",'
    b' "currency": "CNY", "total_amount": NaN}}'
)
ENVELOPE_POISON = [
    b"\xff\xfe\x00\x81 not text",
    b"{not json",
    b'["a", "list"]',
    b'{"type": "no.such.event", "source": "hostile", "key": "y", "data": {}}',
    NAN_ORDER,
]
RAW_POISON = [
    b"\xff\xfe\x00\x81 not text",
    b"{not json",
    b'["a", "list"]',
    b'{"order_id": "o-y", "customer_id": "y", "total_amount": NaN}',
    b'{"customer_id": "y", "customer_id": "z"}',
    b"",
]

#: service -> the topics its consumers read (envelope or raw), the poison for each
CASES: dict[str, dict[str, list[bytes]]] = {
    "ingest": {
        topics.RAW_ORDERS: RAW_POISON,
        topics.RAW_CUSTOMERS: RAW_POISON,
        topics.RAW_INTERACTIONS: RAW_POISON,
        topics.PROFILES: ENVELOPE_POISON,
    },
    "profile": {
        topics.CUSTOMERS: ENVELOPE_POISON,
        topics.ORDERS: ENVELOPE_POISON,
        topics.INTERACTIONS: ENVELOPE_POISON,
        topics.SEGMENTS: ENVELOPE_POISON,
        topics.APIKEY_USAGE: ENVELOPE_POISON,
        topics.EXPORT_PARTS: ENVELOPE_POISON,
        topics.ERASURES_APPLIED: ENVELOPE_POISON,
    },
    "segment": {topics.ORDERS: ENVELOPE_POISON, topics.PROFILES: ENVELOPE_POISON},
    "campaign": {
        topics.SEGMENTS: ENVELOPE_POISON,
        topics.PROFILES: ENVELOPE_POISON,
        topics.ORDERS: ENVELOPE_POISON,
        topics.CAMPAIGN_RECEIPTS: ENVELOPE_POISON,
    },
}
#: tables that hold platform bookkeeping, not records made from consumed data
BOOKKEEPING = (
    "alembic",
    "outbox",
    "processed",
    "consumer",
    "apikey",
    "idempotency",
    "epoch",
    "kv_state",
    "intake_counts",  # ingest's per-day counts of accepted and rejected records
    "cut_points",  # segment's score thresholds, recomputed by its timer whatever is consumed
)


def _record_rows(engine: Any) -> dict[str, int]:
    """Rows in every table that is not bookkeeping: what consumed records turned into."""
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for name in inspect(engine).get_table_names():
            if any(part in name for part in BOOKKEEPING):
                continue
            rows = conn.execute(select(func.count()).select_from(table(name))).scalar_one()
            if rows:
                counts[name] = rows
    return counts


@pytest.mark.parametrize("service", list(CASES))
def test_poison_records_are_dead_lettered_and_become_nothing(
    service: str, broker: Any, namespace: str, db_url: str, tmp_path: Path
) -> None:
    config = importlib.import_module(f"services.{service}.config")
    app_module = importlib.import_module(f"services.{service}.app")
    settings = config.Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        consumer_group=unique("g"),
        run_consumer=True,
    )
    cases = CASES[service]
    ensure_topics(broker.bootstrap_servers, [*cases, topics.DEADLETTER], 3, namespace=namespace)
    with api_client(app_module.create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        before = _record_rows(runtime.db.engine)
        publisher = Publisher(broker.bootstrap_servers, namespace)
        try:
            publisher.publish_all(
                [(topic, "y", value) for topic, values in cases.items() for value in values]
            )
            publisher.producer.flush()
        finally:
            publisher.close()
        published = sum(len(values) for values in cases.values())
        letters = read_topic(
            broker.bootstrap_servers,
            namespace + topics.DEADLETTER,
            expect=published,
            timeout=60,
            predicate=lambda e: e.type == "deadletter.recorded",
        )
        by_topic = Counter(letter.data.origin_topic.removeprefix(namespace) for letter in letters)
        after = _record_rows(runtime.db.engine)
        # the loops go on (ingest's raw loop rejects through its handler, not the loop's count)
        health = {c.name: c.health() for c in runtime.consumers}
    print(
        f"\n[poison/{service}/{db_url.split(':')[0]}] published={published} "
        f"dead-lettered={len(letters)} by topic={dict(by_topic)} records before={before} "
        f"after={after} loops={health}"
    )
    assert set(health.values()) == {"ok"}, health
    assert by_topic == Counter({topic: len(values) for topic, values in cases.items()})
    for letter in letters:
        assert letter.data.error and letter.data.error_type, letter
        assert letter.data.consumer_group.startswith(settings.group_id)
    assert after == before, f"poison became records: {after} (was {before})"
