"""Managed API keys across the real service processes: a key created on profile works
on every service, and once revoked every service refuses it within 5 seconds."""

from __future__ import annotations

import time

import httpx
import pytest

from devtools.testing import wait_for
from shared import manifest
from tests.e2e.system import RunningSystem

#: one read route per service, answered 200 to a key holding every read scope (a service
#: added to shared/manifest.py needs its entry here: the test says so)
READS = {
    "ingest": "/v1/stats",
    "profile": "/v1/customers",
    "segment": "/v1/scoring-policy",
    "campaign": "/v1/campaigns",
}
SCOPES = [f"{name}:read" for name in manifest.NAMES]


def reads() -> dict[str, str]:
    """``READS`` for every service of the manifest, or a failure saying what to add."""
    missing = [name for name in manifest.NAMES if name not in READS]
    if missing:
        pytest.fail(
            f"add READS[{missing[0]!r}] in tests/e2e/test_api_keys_flow.py: a GET route of "
            f"{missing[0]} that answers 200 to a key with the scope {missing[0]}:read"
        )
    return READS


def statuses(system: RunningSystem, key: str) -> dict[str, int]:
    return {
        service: httpx.get(system.url(service, path), headers={"X-API-Key": key}).status_code
        for service, path in reads().items()
    }


def test_a_revoked_key_is_refused_by_every_service_within_5_seconds(
    system: RunningSystem,
) -> None:
    system.wait_ready()
    reads()
    issued = system.post("profile", "/v1/api-keys", json={"name": "e2e", "scopes": SCOPES})
    assert issued.status_code == 201, issued.text
    key, key_id = issued.json()["api_key"], issued.json()["key_id"]
    everywhere_ok = {service: 200 for service in READS}
    # the other services learn the new key from the key topic, without a restart
    wait_for(lambda: statuses(system, key) == everywhere_ok, timeout=30, what="key accepted")

    revoked = system.post("profile", f"/v1/api-keys/{key_id}/revoke")
    assert revoked.status_code == 200
    started = time.monotonic()
    everywhere_refused = {service: 401 for service in READS}
    wait_for(lambda: statuses(system, key) == everywhere_refused, timeout=5, what="revocation")
    print(f"revocation honoured by every service after {time.monotonic() - started:.2f} s")
    for service, path in READS.items():
        body = httpx.get(system.url(service, path), headers={"X-API-Key": key}).json()
        assert body["reason"] == "revoked", service

    # the last use a service saw reaches profile's key list
    shown = wait_for(
        lambda: system.get("profile", f"/v1/api-keys/{key_id}").json()["last_used_at"],
        timeout=30,
        what="last_used_at reported",
    )
    assert shown
