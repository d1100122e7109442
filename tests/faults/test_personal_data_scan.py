"""A scan for personal data: one customer with a distinctive name, mobile, e-mail and
address goes through ingest's REST API and raw topics (valid and invalid input: REST 422s,
rejected raw records, an unparseable body) into profile, and is erased there. Every log
record of both services (message, arguments and traceback) and every error response body is
then scanned for those values: none may appear (ids are fine).

The dead-letter topic is scanned too: a dead letter carries the rejected record's origin
(topic, partition, offset), the reasons, and the size and SHA-256 of its value and key,
never the record, so none may hold personal data, nor the customer id (its key)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import read_topic, unique, wait_for
from services.ingest.app import create_app as ingest_app
from services.ingest.config import Settings as IngestSettings
from services.profile.app import create_app as profile_app
from services.profile.config import Settings as ProfileSettings
from shared import topics
from shared.bus import Publisher
from tests.conftest import ADMIN_KEY, api_client

pytestmark = pytest.mark.kafka
HEADERS = {"X-API-Key": ADMIN_KEY}
CUSTOMER = "c-pii-scan"
NAME = "鲍思琦Zephyrine"
MOBILE = "13912873465"
EMAIL = "zephyrine.bao@quillfeather.example"
STREET = "梧桐巷17号Quillfeather"
#: the least level each logger emits at in a service (shared.logs.configure_logging)
PRODUCTION_LEVELS = {"kafka": logging.WARNING, "alembic": logging.WARNING}
PERSONAL = (NAME, MOBILE, EMAIL, STREET, "Zephyrine", "Quillfeather", "2873465")


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("httpx"):  # the test's own client, not a service
            return
        if record.levelno < PRODUCTION_LEVELS.get(record.name.split(".")[0], logging.INFO):
            return  # what shared.logs.configure_logging lets through
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.texts.append(text)


@pytest.fixture
def logs() -> Iterator[Everything]:
    handler = Everything()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def leaks(text: str) -> list[str]:
    return [value for value in PERSONAL if value in text]


def test_no_personal_data_in_logs_or_error_bodies(
    broker: Any, namespace: str, db_url: str, tmp_path: Path, logs: Everything
) -> None:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "topic_namespace": namespace,
        "api_key": ADMIN_KEY,
        "run_consumer": True,
    }
    ingest_settings = IngestSettings(
        data_dir=tmp_path / "ingest",
        database_url=f"sqlite:///{tmp_path / 'ingest.db'}",
        consumer_group=unique("gi"),
        **common,
    )
    profile_settings = ProfileSettings(
        data_dir=tmp_path / "profile", database_url=db_url, consumer_group=unique("gp"), **common
    )
    customer = {
        "customer_id": CUSTOMER,
        "name": NAME,
        "mobile": MOBILE,
        "email": EMAIL,
        "address": {"province": "浙江", "city": "杭州", "detail": STREET},
    }
    order = {
        "order_id": "o-pii-scan",
        "customer_id": CUSTOMER,
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "88.00",
        "buyer": {"name": NAME, "mobile": MOBILE, "email": EMAIL},
        "shipping": {"province": "浙江", "city": "杭州", "detail": STREET},
    }
    invalid = [
        # whole records rejected (a defining field is bad), personal data beside it
        ("/v1/customers", {**customer, "customer_id": ""}),
        ("/v1/orders", {**order, "total_amount": f"{MOBILE}x"}),
        ("/v1/orders", {**order, "customer_id": EMAIL * 20}),
        # fields dropped with a warning: the values themselves are invalid
        ("/v1/customers", {**customer, "email": f"{EMAIL}@@", "mobile": f"{MOBILE}999"}),
        ("/v1/customers", {**customer, "birthday": NAME}),
    ]
    bodies: list[str] = []
    with (
        api_client(ingest_app(ingest_settings)) as ingest,
        api_client(profile_app(profile_settings)) as profile,
    ):
        assert ingest.post("/v1/customers", json=customer, headers=HEADERS).status_code == 202
        assert ingest.post("/v1/orders", json=order, headers=HEADERS).status_code == 202
        for path, body in invalid:
            response = ingest.post(path, json=body, headers=HEADERS)
            bodies.append(f"{path} {response.status_code} {response.text}")
        broken = ingest.post(
            "/v1/customers",
            content=json.dumps(customer, ensure_ascii=False)[:-5].encode(),
            headers={**HEADERS, "Content-Type": "application/json"},
        )
        bodies.append(f"broken {broken.status_code} {broken.text}")
        unauthorised = ingest.post("/v1/customers", json=customer, headers={"X-API-Key": EMAIL})
        bodies.append(f"bad key {unauthorised.status_code} {unauthorised.text}")
        publisher = Publisher(broker.bootstrap_servers, namespace)
        try:
            raw = [
                (topics.RAW_CUSTOMERS, customer),
                (topics.RAW_CUSTOMERS, {**customer, "customer_id": None}),
                (topics.RAW_ORDERS, {**order, "status": NAME}),
                (topics.RAW_INTERACTIONS, {"customer_id": CUSTOMER, "text": NAME}),
            ]
            publisher.publish_all(
                [(t, CUSTOMER, json.dumps(v, ensure_ascii=False).encode()) for t, v in raw]
            )
            publisher.producer.flush()
        finally:
            publisher.close()

        def profiled() -> bool:
            r = profile.get(f"/v1/customers/{CUSTOMER}", headers=HEADERS)
            return r.status_code == 200 and r.json()["transactions"]["order_count"] == 1

        wait_for(profiled, timeout=60, what="the customer's profile")
        # the scanner finds the values where they are meant to be (the admin's view)
        before = profile.get(f"/v1/customers/{CUSTOMER}", headers=HEADERS).text
        assert {NAME, MOBILE, EMAIL} <= set(leaks(before)), before
        erased = profile.delete(f"/v1/customers/{CUSTOMER}", headers=HEADERS)
        assert erased.status_code == 200, erased.text
        bodies.append(f"erased {erased.text}")
        for path in (f"/v1/customers/{CUSTOMER}", f"/v1/customers/{CUSTOMER}/export"):
            response = profile.get(path, headers=HEADERS)
            bodies.append(f"{path} {response.status_code} {response.text}")
        search = profile.get("/v1/customers", params={"q": EMAIL}, headers=HEADERS)
        bodies.append(f"search {search.status_code} {search.text}")
        letters = read_topic(
            broker.bootstrap_servers, namespace + topics.DEADLETTER, timeout=10, decode=False
        )
    assert any(status in b for b in bodies for status in (" 422 ", " 400 ")), bodies
    in_logs = [text for text in logs.texts if leaks(text)]
    in_bodies = [body for body in bodies if leaks(body)]

    def letter_text(record: Any) -> str:
        return f"{record.key!r} {record.value.decode('utf-8', 'replace')}"

    in_letters = [r for r in letters if leaks(letter_text(r)) or CUSTOMER in letter_text(r)]
    print(
        f"\n[personal data/{db_url.split(':')[0]}] log records={len(logs.texts)} "
        f"with personal data={len(in_logs)}; error bodies={len(bodies)} "
        f"with personal data={len(in_bodies)}; dead letters={len(letters)} "
        f"with personal data or the customer id={len(in_letters)}"
    )
    assert in_logs == [], in_logs[:5]
    assert in_bodies == [], in_bodies[:5]
    # three rejected raw records (a null id, a bad status, an interaction without a kind)
    assert len(letters) >= 3, letters
    assert in_letters == [], [letter_text(r) for r in in_letters[:3]]
