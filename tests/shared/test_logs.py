"""JSON logs: one line per record, with the request id or the consumed record's event id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.logs import JsonFormatter, log_context
from shared.request_id import RequestIdMiddleware
from tests.conftest import ADMIN_KEY, api_client

log = logging.getLogger("tests.logs")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("segment"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.removeHandler(handler)


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_context(lines: io.StringIO) -> None:
    with log_context(event_id="e-1", record="crm.orders.v1[2]@40"):
        log.info("applied %d orders", 3)
    log.warning("outside")
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        with log_context(request_id="r-9"):
            log.exception("failed")
    first, second, third = records(lines)  # three records, three lines: the newlines escaped
    assert first["message"] == "applied 3 orders" and first["service"] == "segment"
    assert (first["event_id"], first["record"], first["level"]) == (
        "e-1",
        "crm.orders.v1[2]@40",
        "INFO",
    )
    assert "event_id" not in second  # the context ended with its block
    assert third["request_id"] == "r-9" and "line two" in third["exc"]


def app() -> FastAPI:
    application = FastAPI()

    @application.get("/work")
    def work() -> dict[str, str]:  # a sync route: runs in the thread pool
        log.info("working")
        return {"ok": "yes"}

    application.add_middleware(RequestIdMiddleware)
    return application


def test_each_request_gets_an_id_in_its_logs_and_response(lines: io.StringIO) -> None:
    client = TestClient(app())
    first = client.get("/work")
    second = client.get("/work")
    given = client.get("/work", headers={"X-Request-ID": "shop-42.a"})
    hostile = client.get("/work", headers={"X-Request-ID": 'x" forged=1'})
    logged = [r["request_id"] for r in records(lines)]
    ids = [r.headers["x-request-id"] for r in (first, second, given, hostile)]
    assert logged == ids
    assert ids[0] != ids[1] and len(ids[0]) == 32
    assert ids[2] == "shop-42.a"  # the caller's id is kept
    assert ids[3] not in ('x" forged=1',) and len(ids[3]) == 32  # a non-token is replaced


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("segment"))
    access = logging.getLogger("crm.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        access.removeHandler(handler)
        access.setLevel(level)


@pytest.mark.parametrize("enabled", [True, False])
def test_one_access_line_per_request_with_the_template_and_no_values(
    access_lines: io.StringIO, tmp_path: Path, enabled: bool
) -> None:
    from services.segment.app import create_app
    from services.segment.config import Settings

    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'segment.db'}",
        api_key=ADMIN_KEY,
        run_consumer=False,
        rescore_at_start=False,
        access_log=enabled,
    )
    with api_client(create_app(settings)) as client:
        response = client.get(
            "/v1/customers/zhang-13800138000/scores",
            params={"as_of": "2026-11-01T00:00:00+08:00"},
            headers={"X-API-Key": ADMIN_KEY, "X-Request-ID": "req-42"},
        )
        assert response.status_code == 404
    found = records(access_lines)
    if not enabled:
        assert found == []
        return
    [line] = [r for r in found if r.get("request_id") == "req-42"]
    assert line["logger"] == "crm.access" and line["service"] == "segment"
    method, path, status, took = line["message"].split(" ")
    assert (method, path, status) == ("GET", "/v1/customers/{customer_id}/scores", "404")
    assert took.endswith("ms") and float(took[:-2]) >= 0
    text = access_lines.getvalue()
    assert "13800138000" not in text and "2026-11-01" not in text  # no ids, no query values
