"""PATCH and DELETE of custom segments: a rule change re-evaluates members and publishes
the moves; a deletion empties the segment, publishes the leaves and segment.deleted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.segment import per_event
from services.segment.app import create_app
from services.segment.config import Settings
from shared.events import SegmentChangedEvent, SegmentDeletedEvent
from tests.conftest import ADMIN_KEY
from tests.segment.helpers import NOW, order, recorded
from tests.segment.test_api import HEADERS, READER, outbox

BIG = {"field": "monetary", "op": "gte", "value": "100"}
SMALL = {"field": "monetary", "op": "lt", "value": "100"}


@pytest.fixture
def client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        api_keys={"reader-key": ["segment:read"]},
        run_consumer=False,
        rescore_at_start=False,
    )
    app = create_app(settings)
    runtime = app.state.runtime
    runtime.extras["clock"] = lambda: NOW
    with TestClient(app) as test_client:
        runtime.relay.stop()  # keep the outbox for inspection
        with runtime.db.unit_of_work() as session:
            per_event.apply_messages(
                session,
                [
                    recorded(order("o1", "alice", days_ago=2, amount="300.00")),
                    recorded(order("o2", "bob", days_ago=5, amount="50.00")),
                ],
                NOW,
            )
        test_client.app_state = runtime  # type: ignore[attr-defined]
        yield test_client


def moves(client: TestClient, since: int) -> list[tuple[str, list[str], list[str]]]:
    return [
        (e.data.customer_id, e.data.segments_entered, e.data.segments_left)
        for e in outbox(client)[since:]
        if isinstance(e, SegmentChangedEvent) and (e.data.segments_entered or e.data.segments_left)
    ]


def members(client: TestClient, segment_id: str) -> list[str]:
    return client.get(f"/v1/segments/{segment_id}/members", headers=READER).json()["items"]


def test_rename_keeps_members_and_a_new_rule_moves_them(client: TestClient) -> None:
    created = client.post(
        "/v1/segments", json={"segment_id": "vip", "name": "VIP", "rule": BIG}, headers=HEADERS
    )
    assert created.status_code == 201
    assert members(client, "vip") == ["alice"]
    before = len(outbox(client))

    renamed = client.patch(
        "/v1/segments/vip",
        json={"name": "Big spenders", "description": "M >= 100"},
        headers=HEADERS,
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["description"]) == ("Big spenders", "M >= 100")
    assert members(client, "vip") == ["alice"]
    assert len(outbox(client)) == before  # nothing to publish

    rerule = client.patch("/v1/segments/vip", json={"rule": SMALL}, headers=HEADERS)
    assert rerule.status_code == 200
    assert rerule.json()["rule"]["op"] == "lt" and rerule.json()["member_count"] == 1
    assert rerule.json()["name"] == "Big spenders"
    assert members(client, "vip") == ["bob"]
    assert sorted(moves(client, before)) == [("alice", [], ["vip"]), ("bob", ["vip"], [])]

    assert (
        client.patch("/v1/segments/vip", json={"rule": {"op": "x"}}, headers=HEADERS).status_code
        == 422
    )
    assert client.patch("/v1/segments/nope", json={"name": "x"}, headers=HEADERS).status_code == 404
    assert client.patch("/v1/segments/vip", json={"name": "x"}, headers=READER).status_code == 403


def test_delete_empties_the_segment_and_tells_campaign(client: TestClient) -> None:
    client.post(
        "/v1/segments", json={"segment_id": "vip", "name": "VIP", "rule": BIG}, headers=HEADERS
    )
    before = len(outbox(client))
    deleted = client.delete("/v1/segments/vip", headers=HEADERS)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["segment_id"] == "vip"
    assert moves(client, before) == [("alice", [], ["vip"])]
    [event] = [e for e in outbox(client) if isinstance(e, SegmentDeletedEvent)]
    assert event.key == "vip" and event.data.name == "VIP"
    assert client.get("/v1/segments/vip", headers=READER).status_code == 404
    assert client.get("/v1/segments", headers=READER).json()["items"] == []
    assert client.get("/v1/segments/vip/members", headers=READER).status_code == 404
    # scores no longer list it
    scores = client.get("/v1/customers/alice/scores", headers=READER).json()
    assert "vip" not in (scores.get("segments") or [])
    assert client.delete("/v1/segments/vip", headers=HEADERS).status_code == 404
    # a deleted id is not handed out again (campaigns aimed at it were told it is gone)
    again = client.post(
        "/v1/segments", json={"segment_id": "vip", "name": "VIP 2", "rule": BIG}, headers=HEADERS
    )
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("/segment-id-deleted")
    assert client.get("/v1/segments/vip", headers=READER).status_code == 404


def test_unknown_fields_are_422_on_create_and_patch(client: TestClient) -> None:
    typo = {"segment_id": "vip", "name": "VIP", "rule": BIG, "descripton": "typo"}
    created = client.post("/v1/segments", json=typo, headers=HEADERS)
    assert created.status_code == 422, created.text
    assert [e["field"] for e in created.json()["errors"]] == ["descripton"]
    assert client.get("/v1/segments/vip", headers=READER).status_code == 404
    del typo["descripton"]
    assert client.post("/v1/segments", json=typo, headers=HEADERS).status_code == 201
    patched = client.patch("/v1/segments/vip", json={"nmae": "Big"}, headers=HEADERS)
    assert patched.status_code == 422, patched.text
    assert [e["field"] for e in patched.json()["errors"]] == ["nmae"]
    assert client.get("/v1/segments/vip", headers=READER).json()["name"] == "VIP"
