"""Managed API keys on profile (their admin home): create, list, rotate, revoke, audit,
the records published for the other services, and last-used reports."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.profile import apikeys
from services.profile.app import create_app
from services.profile.config import Settings
from shared.apikeys import APIKEYS_TOPIC, ApiKeyRecordedEvent
from shared.events import utcnow
from shared.runtime import ServiceRuntime
from tests.conftest import ADMIN_KEY

ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        api_keys={"reader-key": ["profile:read"]},
        run_consumer=False,
    )
    app = create_app(settings, start_runtime=False)
    runtime: ServiceRuntime = app.state.runtime
    runtime.migrate()
    with TestClient(app) as test_client:
        yield test_client
    runtime.db.dispose()


def published(client: TestClient) -> list[ApiKeyRecordedEvent]:
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.sessions() as session:
        rows = session.execute(
            text("SELECT value FROM outbox WHERE topic = :t ORDER BY id"), {"t": APIKEYS_TOPIC}
        ).all()
    return [ApiKeyRecordedEvent.model_validate_json(bytes(r[0])) for r in rows]


def create(client: TestClient, **body: object) -> dict[str, object]:
    body = {"name": "shop backend", "scopes": ["profile:read"], **body}
    response = client.post("/v1/api-keys", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


def test_a_created_key_works_at_once_and_is_stored_and_published_hashed(
    client: TestClient,
) -> None:
    issued = create(client, scopes=["profile:read", "pii:read"])
    key = str(issued["api_key"])
    assert key.startswith(f"crm_{issued['key_id']}_")
    assert client.get("/v1/customers", headers={"X-API-Key": key}).status_code == 200
    # the secret is nowhere: not in the list, not in the database, not on the topic
    listed = client.get("/v1/api-keys", headers=ADMIN).json()["items"]
    assert [k["key_id"] for k in listed] == [issued["key_id"]]
    assert "api_key" not in listed[0] and "secret_hash" not in listed[0]
    secret = key.rsplit("_", 1)[1]
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.sessions() as session:
        stored = session.execute(text("SELECT record FROM api_keys")).scalar_one()
    assert secret not in stored
    [event] = published(client)
    assert event.key == issued["key_id"] and secret not in event.model_dump_json()
    assert event.data.scopes == ["pii:read", "profile:read"]


def test_a_key_without_the_scope_is_refused_and_keys_admin_is_needed(client: TestClient) -> None:
    key = str(create(client, scopes=["segment:read"])["api_key"])
    refused = client.get("/v1/customers", headers={"X-API-Key": key})
    assert refused.status_code == 403
    assert client.get("/v1/api-keys", headers={"X-API-Key": "reader-key"}).status_code == 403
    assert client.get("/v1/api-keys", headers={"X-API-Key": key}).status_code == 403


def test_revoke_refuses_the_key_and_is_audited_and_published(client: TestClient) -> None:
    issued = create(client)
    key = {"X-API-Key": str(issued["api_key"])}
    assert client.post(f"/v1/api-keys/{issued['key_id']}/revoke", headers=ADMIN).status_code == 200
    refused = client.get("/v1/customers", headers=key)
    assert refused.status_code == 401
    assert refused.json()["reason"] == "revoked"
    events = published(client)
    assert [e.data.version for e in events] == [1, 2]
    assert events[-1].data.revoked_at is not None
    audit = client.get(f"/v1/api-keys/{issued['key_id']}/audit", headers=ADMIN).json()["audit"]
    assert [a["action"] for a in audit] == ["api_key.created", "api_key.revoked"]
    assert all(a["actor"] for a in audit)
    # a revoked key cannot be rotated back to life
    rotated = client.post(f"/v1/api-keys/{issued['key_id']}/rotate", json={}, headers=ADMIN)
    assert rotated.status_code == 409


def test_rotate_gives_a_new_secret_and_the_old_one_works_only_during_the_grace(
    client: TestClient,
) -> None:
    issued = create(client)
    old = {"X-API-Key": str(issued["api_key"])}
    rotated = client.post(f"/v1/api-keys/{issued['key_id']}/rotate", json={}, headers=ADMIN).json()
    new = {"X-API-Key": rotated["api_key"]}
    assert rotated["key_id"] == issued["key_id"] and rotated["api_key"] != issued["api_key"]
    assert client.get("/v1/customers", headers=new).status_code == 200
    assert client.get("/v1/customers", headers=old).status_code == 401

    graced = client.post(
        f"/v1/api-keys/{issued['key_id']}/rotate", json={"grace_seconds": 600}, headers=ADMIN
    ).json()
    assert client.get("/v1/customers", headers=new).status_code == 200  # the previous one
    assert client.get("/v1/customers", headers={"X-API-Key": graced["api_key"]}).status_code == 200
    assert client.get("/v1/customers", headers=old).status_code == 401  # two rotations ago


def test_an_expired_key_is_refused(client: TestClient) -> None:
    past = (utcnow() - timedelta(seconds=1)).isoformat()
    key = {"X-API-Key": str(create(client, expires_at=past)["api_key"])}
    refused = client.get("/v1/customers", headers=key)
    assert refused.status_code == 401 and refused.json()["reason"] == "expired"


def test_invalid_scopes_and_limits_are_422_with_their_field(client: TestClient) -> None:
    response = client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["profile:reed"]}, headers=ADMIN
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "scopes"
    response = client.post(
        "/v1/api-keys",
        json={"name": "x", "scopes": ["profile:read"], "rate_limit": "lots"},
        headers=ADMIN,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "rate_limit"


def test_last_used_reports_move_forward_only(client: TestClient) -> None:
    issued = create(client)
    key_id = str(issued["key_id"])
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    later, earlier = utcnow(), utcnow() - timedelta(minutes=5)
    with runtime.db.unit_of_work() as session:
        apikeys.note_used(session, key_id, later)
        apikeys.note_used(session, key_id, earlier)  # late: ignored
        apikeys.note_used(session, key_id, later)  # twice: same
    shown = client.get(f"/v1/api-keys/{key_id}", headers=ADMIN).json()
    assert abs(datetime.fromisoformat(shown["last_used_at"]) - later) < timedelta(seconds=1)


def test_unknown_key_ids_are_404(client: TestClient) -> None:
    assert client.get("/v1/api-keys/nope", headers=ADMIN).status_code == 404
    assert client.post("/v1/api-keys/nope/revoke", headers=ADMIN).status_code == 404
