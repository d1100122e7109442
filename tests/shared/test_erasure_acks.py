"""Each service that applies an erasure acknowledges it in the same transaction: its
``erasure.applied`` (erasure id, part, service; no customer id nor digest) is in its outbox
once the erasure committed, and not when the transaction rolled back."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from devtools.testing import as_inbound
from shared import manifest, topics
from shared.db import Database
from shared.erasure import tombstone_key
from shared.erasure_acks import APPLYING_SERVICES
from shared.events import ProfileErasedEvent, ProfileErasedPayload

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CUSTOMER = "tb_ack_customer88"


def erasure(part: int, parts: int) -> ProfileErasedEvent:
    return ProfileErasedEvent(
        source="profile",
        key=CUSTOMER,
        data=ProfileErasedPayload(
            customer_id=CUSTOMER, erasure_id="er-42", requested_at=NOW, part=part, parts=parts
        ),
    )


def erasure_consumer(name: str, db_url: str, tmp_path: Path) -> tuple[Any, Any]:
    """The service's runtime and the batch handler of its consumer loop that reads
    ``profile.erased`` (on crm.profiles.v1), both built as the service builds them: its
    ``app.create_runtime`` and the consumer factory it registers (``build_consumers``)."""
    spec = manifest.service(name)
    settings = importlib.import_module(f"{spec.package}.config").Settings(
        data_dir=tmp_path, database_url=db_url, kafka_bootstrap_servers="127.0.0.1:1"
    )
    runtime = importlib.import_module(f"{spec.package}.app").create_runtime(settings)
    loops = runtime.consumer_factory(runtime) if runtime.consumer_factory else []
    readers = [loop for loop in loops if topics.PROFILES in loop.topics]
    if len(readers) != 1:
        runtime.db.dispose()
        pytest.fail(
            f"{name} writes {topics.ERASURES_APPLIED} (shared/manifest.py), so its "
            f"consumer.build_consumers must return exactly one loop reading {topics.PROFILES} "
            f"(found {len(readers)}) whose batch handler applies profile.erased and calls "
            "shared.erasure_acks.acknowledge (see docs/architecture.md)"
        )
    return runtime, readers[0].batch_handler


def acks_in_outbox(db: Database) -> list[dict[str, Any]]:
    with db.sessions() as session:
        rows = session.execute(text("SELECT topic, key, value FROM outbox ORDER BY id")).all()
    found = []
    for topic, key, value in rows:
        if topic == topics.ERASURES_APPLIED:
            assert key == "er-42"
            found.append(orjson.loads(value))
    return found


@pytest.mark.parametrize("name", APPLYING_SERVICES)
def test_a_service_acknowledges_the_erasure_it_applied(
    name: str, db_url: str, tmp_path: Path
) -> None:
    runtime, handle = erasure_consumer(name, db_url, tmp_path)
    runtime.migrate()
    db = runtime.db
    try:
        # the transaction fails: no acknowledgement leaves
        with pytest.raises(RuntimeError), db.unit_of_work() as session:
            handle(session, [as_inbound(erasure(0, 2), 0)])
            raise RuntimeError("rolled back")
        assert acks_in_outbox(db) == []

        with db.unit_of_work() as session:
            handle(session, [as_inbound(erasure(0, 2), 0), as_inbound(erasure(1, 2), 1)])
        acks = acks_in_outbox(db)
        assert [a["type"] for a in acks] == ["erasure.applied"] * 2
        assert [(a["data"]["part"], a["data"]["parts"]) for a in acks] == [(0, 2), (1, 2)]
        assert {a["data"]["service"] for a in acks} == {name}
        assert {a["data"]["erasure_id"] for a in acks} == {"er-42"}
        raw = orjson.dumps(acks).decode()
        assert CUSTOMER not in raw and tombstone_key(CUSTOMER) not in raw
    finally:
        db.dispose()
