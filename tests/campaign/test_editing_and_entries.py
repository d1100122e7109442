"""PATCH a campaign while draft or scheduled; read back its entries (pages, filters, CSV)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devtools.broker import EmbeddedBroker
from services.campaign.app import create_app
from services.campaign.projection import apply_audience_events
from tests.campaign.factories import policy_event, segment_event, settings
from tests.campaign.test_api import ADMIN, CAMPAIGN, READER
from tests.conftest import ADMIN_KEY, api_client


@pytest.fixture
def client(
    broker: EmbeddedBroker, namespace: str, tmp_path: Path, db_url: str
) -> Iterator[TestClient]:
    """The campaign API on SQLite, then on PostgreSQL."""
    cfg = settings(
        tmp_path,
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        database_url=db_url,
        api_key=ADMIN_KEY,
        api_keys={"reader-key": ["campaign:read"]},
        launch_chunk_size=4,
    )
    with api_client(create_app(cfg)) as test_client:
        yield test_client


def test_a_draft_or_scheduled_campaign_can_be_changed_and_a_running_one_cannot(
    client: TestClient,
) -> None:
    campaign_id = client.post("/v1/campaigns", json=CAMPAIGN, headers=ADMIN).json()["campaign_id"]
    changed = client.patch(
        f"/v1/campaigns/{campaign_id}",
        json={"name": "reactivate, second try", "holdout_share": 0.1},
        headers=ADMIN,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["holdout_share"]) == ("reactivate, second try", 0.1)
    assert body["channels"] == CAMPAIGN["channels"]  # not sent: unchanged
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=READER).json()["name"] == (
        "reactivate, second try"
    )
    # the result is checked like a new campaign: each problem names its field
    bad = client.patch(
        f"/v1/campaigns/{campaign_id}", json={"channels": ["sms", "sms"]}, headers=ADMIN
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "channels"
    bad = client.patch(
        f"/v1/campaigns/{campaign_id}",
        json={"content": {"template": "{{nope}}"}},
        headers=ADMIN,
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "content.template"
    assert (
        client.patch(f"/v1/campaigns/{campaign_id}", json={"x": 1}, headers=ADMIN).status_code
        == 422
    )
    assert client.patch(f"/v1/campaigns/{campaign_id}", json={}, headers=READER).status_code == 403

    scheduled = client.post(
        f"/v1/campaigns/{campaign_id}/status", json={"status": "scheduled"}, headers=ADMIN
    ).json()
    moved = client.patch(
        f"/v1/campaigns/{campaign_id}",
        json={"schedule": {"at": "2030-01-01T08:00:00+00:00"}},
        headers=ADMIN,
    ).json()
    assert moved["status"] == "scheduled"
    assert moved["next_run_at"] != scheduled["next_run_at"]
    assert moved["next_run_at"].startswith("2030-01-01T08:00:00")

    client.post(f"/v1/campaigns/{campaign_id}/status", json={"status": "cancelled"}, headers=ADMIN)
    refused = client.patch(f"/v1/campaigns/{campaign_id}", json={"name": "x"}, headers=ADMIN)
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/campaign-not-editable")
    assert client.patch("/v1/campaigns/nope", json={"name": "x"}, headers=ADMIN).status_code == 404


def test_entries_list_every_outcome_with_reasons_paged_and_as_csv(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        apply_audience_events(
            session,
            [
                *[segment_event(f"s{i:02}", lifecycle="silent", r=1) for i in range(12)],
                # s00..s09 may be sent an SMS; s10, s11 have no consented channel
                *[policy_event(f"s{i:02}", {"sms": True}) for i in range(10)],
            ],
        )
    campaign_id = client.post("/v1/campaigns", json=CAMPAIGN, headers=ADMIN).json()["campaign_id"]
    launched = client.post(f"/v1/campaigns/{campaign_id}/launch", headers=ADMIN).json()
    url = f"/v1/campaigns/{campaign_id}/entries"

    everyone = client.get(url, params={"limit": 1000}, headers=READER).json()["items"]
    assert sorted(e["customer_id"] for e in everyone) == [f"s{i:02}" for i in range(12)]
    by_outcome: dict[str, list[dict[str, object]]] = {}
    for entry in everyone:
        by_outcome.setdefault(str(entry["outcome"]), []).append(entry)
    assert len(by_outcome.get("sent", [])) == launched["sent"]
    assert len(by_outcome.get("holdout", [])) == launched["holdout"]
    excluded = by_outcome["excluded"]
    assert all(e["reason"] for e in excluded) and all(e["channel"] is None for e in excluded)
    assert all(e["message_id"] and e["channel"] == "sms" for e in by_outcome.get("sent", []))

    only = client.get(url, params={"outcome": "excluded"}, headers=READER).json()["items"]
    assert only == excluded
    reason = str(excluded[0]["reason"])
    for_reason = client.get(url, params={"reason": reason}, headers=READER).json()["items"]
    assert for_reason and all(e["reason"] == reason for e in for_reason)
    assert client.get(url, params={"outcome": "maybe"}, headers=READER).status_code == 422

    # pages of 5 walk all entries once, in order
    seen, cursor = [], None
    while True:
        params: dict[str, object] = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = client.get(url, params=params, headers=READER).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everyone

    download = client.get(f"{url}.csv", headers=READER)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [r["customer_id"] for r in rows] == [e["customer_id"] for e in everyone]
    assert [r["outcome"] for r in rows] == [e["outcome"] for e in everyone]
    # every cell reads as the JSON page writes it: true/false, times with Z, none empty
    as_json = [
        {
            k: "" if v is None else ("true" if v is True else "false" if v is False else str(v))
            for k, v in e.items()
        }
        for e in everyone
    ]
    assert [{k: r[k] for k in e} for r, e in zip(rows, as_json, strict=True)] == as_json
    excluded_csv = client.get(f"{url}.csv", params={"outcome": "excluded"}, headers=READER)
    assert len(list(csv.DictReader(io.StringIO(excluded_csv.text)))) == len(excluded)

    assert client.get("/v1/campaigns/nope/entries", headers=READER).status_code == 404
    assert client.get("/v1/campaigns/nope/entries.csv", headers=READER).status_code == 404
