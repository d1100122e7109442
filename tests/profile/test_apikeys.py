"""Managed API keys on profile (their admin home): create, list, rotate, revoke, audit,
the records published for the other services, and last-used reports."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text

from services.profile import apikeys
from shared.apikeys import APIKEYS_TOPIC, ApiKeyRecordedEvent, KeyDirectory
from shared.events import utcnow
from shared.runtime import ServiceRuntime
from tests.conftest import ADMIN_KEY, outbox_values

ADMIN = {"X-API-Key": ADMIN_KEY}


def published(client: TestClient) -> list[ApiKeyRecordedEvent]:
    return [
        ApiKeyRecordedEvent.model_validate_json(v) for v in outbox_values(client, APIKEYS_TOPIC)
    ]


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


def test_an_expired_key_is_refused_and_cannot_be_created_expired(client: TestClient) -> None:
    past = (utcnow() - timedelta(seconds=1)).isoformat()
    response = client.post(
        "/v1/api-keys",
        json={"name": "x", "scopes": ["profile:read"], "expires_at": past},
        headers=ADMIN,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "expires_at"
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    issued = create(client, expires_at=soon)
    key = {"X-API-Key": str(issued["api_key"])}
    assert client.get("/v1/customers", headers=key).status_code == 200
    # the hour passed (as the key directory sees it): refused as expired
    directory: KeyDirectory = client.app.state.key_directory  # type: ignore[attr-defined]
    held = directory.get(str(issued["key_id"]))
    assert held is not None
    directory.apply(
        held.model_copy(
            update={"expires_at": utcnow() - timedelta(seconds=1), "version": held.version + 1}
        )
    )
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


def test_a_secret_is_never_kept_for_an_idempotency_key_nor_replayed(client: TestClient) -> None:
    """The secret is shown once: with an Idempotency-Key, the idempotency record keeps
    neither the secret nor the body; a repeat is 409 naming the key, without the secret."""
    body = {"name": "shop", "scopes": ["profile:read"]}
    headers = {**ADMIN, "Idempotency-Key": "create-1"}
    first = client.post("/v1/api-keys", json=body, headers=headers)
    assert first.status_code == 201 and first.headers["cache-control"] == "no-store"
    key_id, key = first.json()["key_id"], first.json()["api_key"]
    rotated = client.post(
        f"/v1/api-keys/{key_id}/rotate",
        json={"grace_seconds": 0},
        headers={**ADMIN, "Idempotency-Key": "rotate-1"},
    )
    assert rotated.status_code == 200
    new_key = rotated.json()["api_key"]
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.sessions() as session:
        stored = session.execute(text("SELECT response_body FROM idempotency_keys")).all()
    assert len(stored) == 2
    for (raw,) in stored:
        kept = bytes(raw)
        for secret in (key, new_key, key.rsplit("_", 1)[1], new_key.rsplit("_", 1)[1]):
            assert secret.encode() not in kept
    for path, sent, idem in (
        ("/v1/api-keys", body, "create-1"),
        (f"/v1/api-keys/{key_id}/rotate", {"grace_seconds": 0}, "rotate-1"),
    ):
        again = client.post(path, json=sent, headers={**ADMIN, "Idempotency-Key": idem})
        assert again.status_code == 409, again.text
        assert again.headers["idempotent-replayed"] == "true"
        problem = again.json()
        assert problem["type"].endswith("/idempotency-secret-not-replayed")
        assert problem["location"] == f"/v1/api-keys/{key_id}"
        assert "api_key" not in problem and "crm_" not in again.text
    # nothing was created twice
    assert [k["key_id"] for k in client.get("/v1/api-keys", headers=ADMIN).json()["items"]] == [
        key_id
    ]
