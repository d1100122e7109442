"""The HTTP API: validation, status changes, launch, report, scopes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.campaign.projection import apply_audience_events
from services.campaign.targeting import in_holdout
from tests.campaign.factories import policy_event, segment_event
from tests.conftest import ADMIN_KEY

ADMIN = {"X-API-Key": ADMIN_KEY}
READER = {"X-API-Key": "reader-key"}

CAMPAIGN = {
    "name": "reactivate silent buyers",
    "purpose": "reactivation",
    "audience": {
        "rule": {
            "all": [
                {"field": "lifecycle_stage", "op": "eq", "value": "silent"},
                {"field": "r_score", "op": "lte", "value": 2},
            ]
        }
    },
    "channels": ["wechat", "sms"],
    "content": {"template": "{{ city }} 好久不见, 券 {{coupon}}", "variables": {"coupon": "BACK5"}},
    "holdout_share": 0.25,
    "conversion_window_days": 14,
}


def test_campaign_lifecycle_through_the_api(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        apply_audience_events(
            session,
            [
                *[segment_event(f"s{i}", lifecycle="silent", r=1) for i in range(12)],
                *[policy_event(f"s{i}", {"sms": True}) for i in range(12)],
                segment_event("active", lifecycle="active", r=1),
            ],
        )
    created = client.post("/v1/campaigns", json=CAMPAIGN, headers=ADMIN)
    assert created.status_code == 201, created.text
    campaign = created.json()
    campaign_id = campaign["campaign_id"]
    assert campaign["status"] == "draft"
    assert (
        client.get(f"/v1/campaigns/{campaign_id}", headers=READER).json()["name"]
        == CAMPAIGN["name"]
    )

    # a reader cannot launch; a draft cannot complete
    assert client.post(f"/v1/campaigns/{campaign_id}/launch", headers=READER).status_code == 403
    bad = client.post(
        f"/v1/campaigns/{campaign_id}/status", json={"status": "completed"}, headers=ADMIN
    )
    assert bad.status_code == 409 and bad.json()["type"].endswith("/conflict")

    launched = client.post(f"/v1/campaigns/{campaign_id}/launch", headers=ADMIN)
    assert launched.status_code == 200, launched.text
    result = launched.json()
    held = sum(in_holdout(campaign_id, f"s{i}", 0.25) for i in range(12))
    assert result["targeted"] == 12 and result["holdout"] == held and result["sent"] == 12 - held
    assert result["status"] == "running"
    again = client.post(f"/v1/campaigns/{campaign_id}/launch", headers=ADMIN).json()
    assert again["already_launched"] and again["sent"] == result["sent"]

    report = client.get(f"/v1/campaigns/{campaign_id}/report", headers=READER)
    assert report.status_code == 200
    body = report.json()
    assert body["final"] is False and body["targeted"] == 12
    assert body["treatment"]["converted"] == 0 and body["treatment"]["revenue"] == "0.00"

    cancelled = client.post(
        f"/v1/campaigns/{campaign_id}/status", json={"status": "cancelled"}, headers=ADMIN
    )
    assert cancelled.json()["status"] == "cancelled"
    assert client.post(f"/v1/campaigns/{campaign_id}/launch", headers=ADMIN).status_code == 409


@pytest.mark.parametrize(
    "change",
    [
        {"content": {"template": "hi {{ name }}"}},  # unknown variable (no PII here)
        {"channels": ["sms", "sms"]},
        {"channels": ["pigeon"]},
        {"audience": {"segment_id": "x", "rule": {"field": "r_score", "op": "eq", "value": 1}}},
        {"audience": {"rule": {"field": "r_score", "op": "contains", "value": 1}}},
        {"audience": None},
        {"holdout_share": 0.95},
        {"schedule": {"type": "at"}},
        {"trigger": {"type": "unpaid_order"}},
        {"name": "x\x00y"},  # a NUL byte: PostgreSQL cannot store it
    ],
)
def test_invalid_campaigns_are_422_problems(client: TestClient, change: dict) -> None:
    response = client.post("/v1/campaigns", json={**CAMPAIGN, **change}, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert all(e["field"] for e in response.json()["errors"]), response.json()  # each named
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("condition", "where", "code", "message"),
    [
        (
            {"field": "nope", "op": "eq", "value": 1},
            "field",
            "rule.field",
            "unknown field 'nope'; known: city, currency, f_score, frequency, lifecycle_stage, "
            "m_score, monetary, province, r_score, recency_days, rfm_segment, segments, tags, "
            "value_quadrant",
        ),
        (
            {"field": "tags", "op": "eq", "value": "x"},
            "op",
            "rule.op",
            "tags takes contains, contains_any or contains_all",
        ),
        (
            {"field": "monetary", "op": "gt", "value": "lots"},
            "value",
            "rule.value",
            "monetary takes decimal amounts, not 'lots'",
        ),
        ({"field": "r_score", "op": "gte"}, "value", "missing", "Field required"),
    ],
)
def test_a_bad_nested_audience_condition_is_one_precise_error(
    client: TestClient, condition: dict, where: str, code: str, message: str
) -> None:
    rule = {
        "all": [
            {"field": "lifecycle_stage", "op": "eq", "value": "silent"},
            {"any": [{"field": "r_score", "op": "lte", "value": 2}, {"not": condition}]},
        ]
    }
    response = client.post(
        "/v1/campaigns", json={**CAMPAIGN, "audience": {"rule": rule}}, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"] == [
        {"field": f"audience.rule.all[1].any[1].not.{where}", "code": code, "message": message}
    ]
    assert problem["detail"] == "1 invalid field(s)"


def test_list_is_cursor_paginated_and_filters_by_status(client: TestClient) -> None:
    ids = [
        client.post("/v1/campaigns", json={**CAMPAIGN, "name": f"c{i}"}, headers=ADMIN).json()[
            "campaign_id"
        ]
        for i in range(5)
    ]
    client.post(f"/v1/campaigns/{ids[0]}/status", json={"status": "scheduled"}, headers=ADMIN)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/campaigns", params=params, headers=ADMIN).json()
        seen += [c["campaign_id"] for c in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    scheduled = client.get("/v1/campaigns", params={"status": "scheduled"}, headers=ADMIN).json()
    assert [c["campaign_id"] for c in scheduled["items"]] == [ids[0]]
    assert client.get("/v1/campaigns/nope", headers=ADMIN).status_code == 404


def test_oversized_bodies_are_413(client: TestClient) -> None:
    big = {
        **CAMPAIGN,
        "audience": {"rule": {"field": "city", "op": "in", "value": ["x" * 9] * 120_000}},
    }
    response = client.post("/v1/campaigns", json=big, headers=ADMIN)
    assert response.status_code == 413
    assert response.json()["type"].endswith("/payload-too-large")
