"""Which services applied an erasure: DELETE answers the pending services, each
``erasure.applied`` marks one applied, GET shows it per service without personal data,
and an erasure pending past the bound is counted in a gauge and logged once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from devtools.testing import as_inbound
from services.profile import consuming, erasure_acks
from services.profile.app import create_app
from services.profile.config import Settings
from services.profile.handlers import HANDLERS
from shared.erasure_acks import APPLYING_SERVICES
from shared.events import ErasureAppliedEvent, ErasureAppliedPayload, utcnow
from tests.conftest import ADMIN_KEY, api_client, outbox_values, runtime_of
from tests.profile.profile_factories import customer, order

HEADERS = {"X-API-Key": ADMIN_KEY}
#: the services profile waits for, from the manifest: every one but the last (by name)
#: acknowledges first, the last stays pending
*EARLY, LATE = sorted(APPLYING_SERVICES)
CUSTOMER = "tb_ack.person@example.cn"


@pytest.fixture
def client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        run_consumer=False,
    )
    with api_client(create_app(settings, start_runtime=False), migrate=True) as test_client:
        yield test_client


def ack(erasure_id: str, service_name: str, part: int = 0, parts: int = 1) -> ErasureAppliedEvent:
    return ErasureAppliedEvent(
        source=service_name,
        key=erasure_id,
        data=ErasureAppliedPayload(
            erasure_id=erasure_id,
            part=part,
            parts=parts,
            service=service_name,
            applied_at=utcnow(),
        ),
    )


def consume(client: TestClient, *events: ErasureAppliedEvent) -> None:
    """What profile's erasure-ack consumer does with a poll batch (its registry)."""
    runtime = runtime_of(client)
    with runtime.db.unit_of_work() as session:
        messages = [as_inbound(e, n) for n, e in enumerate(events)]
        HANDLERS.dispatch(session, messages, runtime.settings)


def statuses(body: dict[str, Any]) -> dict[str, str]:
    return {s["service"]: s["status"] for s in body["services"]}


def test_an_erasure_is_pending_per_service_until_each_acknowledges(client: TestClient) -> None:
    runtime = runtime_of(client)
    with runtime.db.unit_of_work() as session:
        consuming.apply_events(
            session,
            [customer(CUSTOMER, name="张三", mobile="13800138000"), order(CUSTOMER, "o-1")],
            runtime.settings,  # type: ignore[arg-type]
        )
    erased = client.delete(f"/v1/customers/{CUSTOMER}", headers=HEADERS)
    assert erased.status_code == 200, erased.text
    erasure_id = erased.json()["erasure_id"]
    assert erased.json()["pending_services"] == list(APPLYING_SERVICES)
    published = [orjson.loads(v) for v in outbox_values(client)]
    event = next(e for e in published if e["type"] == "profile.erased")
    assert (event["data"]["part"], event["data"]["parts"]) == (0, 1)

    body = client.get(f"/v1/erasures/{erasure_id}", headers=HEADERS).json()
    assert statuses(body) == dict.fromkeys(sorted(APPLYING_SERVICES), "pending")
    assert body["pending_services"] == sorted(APPLYING_SERVICES)
    listed = client.get("/v1/erasures", headers=HEADERS).json()
    assert [i["erasure_id"] for i in listed["items"]] == [erasure_id]
    assert listed["overdue_after_minutes"] == 15
    # nothing is overdue yet
    assert client.get("/v1/erasures?overdue=true", headers=HEADERS).json()["items"] == []

    consume(client, *(ack(erasure_id, name) for name in reversed(EARLY)))
    body = client.get(f"/v1/erasures/{erasure_id}", headers=HEADERS).json()
    assert statuses(body) == {**dict.fromkeys(EARLY, "applied"), LATE: "pending"}
    assert body["pending_services"] == [LATE]
    first = {s["service"]: s["applied_at"] for s in body["services"]}
    listed = client.get("/v1/erasures", headers=HEADERS).json()["items"]
    assert listed[0]["pending_services"] == [LATE]

    # a redelivered acknowledgement changes nothing; the last one completes the erasure
    consume(client, ack(erasure_id, EARLY[0]), ack(erasure_id, LATE))
    body = client.get(f"/v1/erasures/{erasure_id}", headers=HEADERS).json()
    assert set(statuses(body).values()) == {"applied"} and body["pending_services"] == []
    assert {s["service"]: s["applied_at"] for s in body["services"]}[EARLY[0]] == first[EARLY[0]]
    assert client.get("/v1/erasures", headers=HEADERS).json()["items"] == []

    # no personal data in the answers
    for text_ in (erased.text, client.get(f"/v1/erasures/{erasure_id}", headers=HEADERS).text):
        assert CUSTOMER not in text_ and "张三" not in text_ and "13800138000" not in text_
        assert "tb_ack" not in text_
    assert client.get("/v1/erasures/nope", headers=HEADERS).json()["detail"] == "no such erasure"


def test_an_erasure_of_several_ids_waits_for_every_part(client: TestClient) -> None:
    runtime = runtime_of(client)
    with runtime.db.unit_of_work() as session:
        erasure_acks.record_requested(session, "er-two", 2, utcnow())
    consume(client, ack("er-two", LATE, 1, 2), ack("er-unknown", LATE))
    with runtime.db.sessions() as session:
        progress = erasure_acks.progress(session, "er-two")
        assert erasure_acks.progress(session, "er-unknown") is None
    assert progress is not None
    late = next(s for s in progress["services"] if s["service"] == LATE)
    assert (late["status"], late["parts_applied"], late["parts"]) == ("pending", 1, 2)
    consume(client, ack("er-two", LATE, 0, 2))
    with runtime.db.sessions() as session:
        progress = erasure_acks.progress(session, "er-two")
    assert progress is not None and progress["pending_services"] == EARLY


def gauge(name: str, service_name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service_name})


def test_an_erasure_pending_past_the_bound_is_counted_and_logged_once(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = runtime_of(client)
    now = utcnow()
    with runtime.db.unit_of_work() as session:
        erasure_acks.record_requested(session, "er-old", 1, now - timedelta(minutes=20))
        erasure_acks.record_requested(session, "er-new", 1, now - timedelta(minutes=1))
    consume(client, *(ack("er-old", name) for name in EARLY))
    watch = erasure_acks.ErasureWatch(timedelta(minutes=15))
    with (
        caplog.at_level(logging.WARNING, logger="services.profile.erasure_acks"),
        runtime.db.sessions() as session,
    ):
        assert watch.check(session, now) == {**dict.fromkeys(APPLYING_SERVICES, 0), LATE: 1}
        watch.check(session, now)  # still overdue: not logged again
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"profile: erasure er-old not yet applied by {LATE} after 15 min "
                     "(see GET /v1/erasures/er-old)"]  # fmt: skip
    assert gauge("crm_erasures_overdue", LATE) == 1
    for name in EARLY:
        assert gauge("crm_erasures_overdue", name) == 0
        assert gauge("crm_erasures_pending", name) == 1
    assert gauge("crm_erasures_pending", LATE) == 2
    overdue = client.get("/v1/erasures?overdue=true", headers=HEADERS).json()["items"]
    assert [(i["erasure_id"], i["pending_services"]) for i in overdue] == [("er-old", [LATE])]

    consume(client, ack("er-old", LATE))
    with runtime.db.sessions() as session:
        assert watch.check(session, now)[LATE] == 0
    assert gauge("crm_erasures_overdue", LATE) == 0
    assert gauge("crm_erasures_pending", LATE) == 1
