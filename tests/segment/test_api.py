"""The REST API over seeded data (no broker: the outbox is inspected directly)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.segment import per_event
from services.segment.app import create_app
from services.segment.config import Settings
from shared.events import decode_event
from tests.conftest import ADMIN_KEY
from tests.segment.helpers import NOW, order, recorded

HEADERS = {"X-API-Key": ADMIN_KEY}
READER = {"X-API-Key": "reader-key"}


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=sqlite_url,
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
                    recorded(order("o1", "alice", days_ago=2, amount="300.00", category="shoes")),
                    recorded(order("o2", "alice", days_ago=20, amount="200.00", channel="jd")),
                    recorded(order("o3", "bob", days_ago=100, amount="50.00", province="广东省")),
                    recorded(order("o4", "carol", days_ago=1, amount="10.00", status="created")),
                ],
                NOW,
            )
        test_client.app_state = runtime  # type: ignore[attr-defined]
        yield test_client


def outbox(client: TestClient) -> list:
    runtime = client.app_state  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        rows = session.execute(text("SELECT value FROM outbox ORDER BY id")).scalars().all()
    return [decode_event(bytes(v)) for v in rows]


def test_customer_scores_now_and_as_of(client: TestClient) -> None:
    body = client.get("/v1/customers/alice/scores", headers=READER).json()
    assert body["frequency"] == 2 and body["monetary"] == "500.00"
    assert body["order_count"] == 2 and body["average_order_value"] == "250.00"
    assert body["lifecycle_stage"] == "new" and body["recency_days"] == 2
    assert body["channels"] == ["jd", "tmall"] and "shoes" in body["categories"]
    assert body["as_of"].startswith("2026-11-20")
    past = client.get(
        "/v1/customers/alice/scores", params={"as_of": "2026-11-05T00:00:00+08:00"}, headers=READER
    ).json()
    assert past["frequency"] == 1 and past["monetary"] == "200.00" and past["recency_days"] == 5
    before = client.get(
        "/v1/customers/alice/scores", params={"as_of": "2026-10-01T00:00:00+08:00"}, headers=READER
    )
    assert before.status_code == 404
    prospect = client.get("/v1/customers/carol/scores", headers=READER).json()
    assert prospect["lifecycle_stage"] == "prospect" and prospect["r_score"] is None
    naive = client.get(
        "/v1/customers/alice/scores", params={"as_of": "2026-11-05T00:00:00"}, headers=READER
    )
    assert naive.status_code == 422


def test_scores_are_cursor_paginated(client: TestClient) -> None:
    first = client.get("/v1/scores", params={"limit": 2}, headers=READER).json()
    assert [i["customer_id"] for i in first["items"]] == ["alice", "bob"]
    rest = client.get(
        "/v1/scores", params={"limit": 2, "cursor": first["next_cursor"]}, headers=READER
    ).json()
    assert [i["customer_id"] for i in rest["items"]] == ["carol"] and rest["next_cursor"] is None


def test_policy_versions_and_rescoring(client: TestClient) -> None:
    assert client.get("/v1/scoring-policy", headers=READER).json()["version"] == 1
    policy = client.get("/v1/scoring-policy", headers=READER).json()["policy"]
    policy["lifecycle"]["active_days"] = 10
    assert client.put("/v1/scoring-policy", json=policy, headers=READER).status_code == 403
    written = client.put("/v1/scoring-policy", json=policy, headers=HEADERS)
    assert written.status_code == 200, written.text
    assert written.json()["version"] == 2
    versions = client.get("/v1/scoring-policy/versions", headers=READER).json()["items"]
    assert [v["version"] for v in versions] == [1, 2]
    first = client.get("/v1/scoring-policy/versions", params={"limit": 1}, headers=READER).json()
    assert [v["version"] for v in first["items"]] == [1] and first["next_cursor"]
    rest = client.get(
        "/v1/scoring-policy/versions", params={"cursor": first["next_cursor"]}, headers=READER
    ).json()
    assert [v["version"] for v in rest["items"]] == [2] and rest["next_cursor"] is None
    assert versions[0]["policy"]["lifecycle"]["active_days"] == 30
    body = client.get("/v1/customers/alice/scores", headers=READER).json()
    assert body["policy_version"] == 2
    # alice's first order is 20 days old: no longer "new" under a 10-day active window
    assert body["lifecycle_stage"] == "active"
    last = [e for e in outbox(client) if e.data.customer_id == "alice"][-1]
    assert last.data.policy_version == 2 and last.data.current.lifecycle_stage == "active"
    bad = dict(policy, lifecycle={"active_days": 100, "silent_days": 90, "sleeping_days": 180})
    assert client.put("/v1/scoring-policy", json=bad, headers=HEADERS).status_code == 422
    recomputed = client.post("/v1/scoring/recompute", headers=HEADERS).json()
    assert recomputed["customers"] == 3 and recomputed["changed"] == 0


def test_a_put_of_the_policy_in_force_changes_nothing_and_versions_keep_their_moment(
    client: TestClient,
) -> None:
    before = client.get("/v1/scoring-policy/versions", headers=READER).json()["items"]
    # version 1 is stored at the database's first start (the migration), with that moment
    assert [v["version"] for v in before] == [1] and before[0]["created_at"] is not None
    for same in ({}, before[0]["policy"]):  # {}: every field at its default, i.e. the default
        unchanged = client.put("/v1/scoring-policy", json=same, headers=HEADERS)
        assert unchanged.status_code == 200, unchanged.text
        assert unchanged.json() == {"version": 1, "created": False, "rescoring": None}
    assert client.get("/v1/scoring-policy/versions", headers=READER).json()["items"] == before

    changed = dict(
        before[0]["policy"], lifecycle={"active_days": 10, "silent_days": 90, "sleeping_days": 180}
    )
    written = client.put("/v1/scoring-policy", json=changed, headers=HEADERS).json()
    assert (written["version"], written["created"]) == (2, True)
    assert written["rescoring"]["policy_version"] == 2
    versions = client.get("/v1/scoring-policy/versions", headers=READER).json()["items"]
    assert versions[0] == before[0]  # the default's created_at never changes
    assert versions[1]["created_at"] > versions[0]["created_at"]
    again = client.put("/v1/scoring-policy", json=changed, headers=HEADERS).json()
    assert (again["version"], again["created"]) == (2, False)
    assert client.get("/v1/scoring-policy/versions", headers=READER).json()["items"] == versions
    assert (
        client.get("/v1/scoring-policy", headers=READER).json()["created_at"]
        == versions[1]["created_at"]
    )


def test_custom_segments_and_their_members(client: TestClient) -> None:
    rule = {
        "all": [
            {"field": "monetary", "op": "gte", "value": "100"},
            {
                "any": [
                    {"field": "categories", "op": "contains", "value": "shoes"},
                    {"field": "province", "op": "in", "value": ["广东省"]},
                ]
            },
            {"not": {"field": "lifecycle_stage", "op": "eq", "value": "lost"}},
        ]
    }
    created = client.post(
        "/v1/segments",
        json={"segment_id": "big-shoes", "name": "Big shoe buyers", "rule": rule},
        headers=HEADERS,
    )
    assert created.status_code == 201, created.text
    assert created.json()["member_count"] == 1
    members = client.get("/v1/segments/big-shoes/members", headers=READER).json()
    assert members["items"] == ["alice"]
    entered = [e for e in outbox(client) if e.data.segments_entered]
    assert [(e.data.customer_id, e.data.segments_entered) for e in entered] == [
        ("alice", ["big-shoes"])
    ]
    # bob buys shoes for 200: the event moves him in
    runtime = client.app_state  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        per_event.apply_messages(
            session,
            [recorded(order("o5", "bob", days_ago=1, amount="200.00", category="shoes"))],
            NOW,
        )
    assert client.get("/v1/segments/big-shoes", headers=READER).json()["member_count"] == 2
    page = client.get("/v1/segments/big-shoes/members", params={"limit": 1}, headers=READER).json()
    assert page["items"] == ["alice"] and page["next_cursor"]
    assert (
        client.get("/v1/segments", headers=READER).json()["items"][0]["segment_id"] == "big-shoes"
    )
    assert (
        client.post(
            "/v1/segments",
            json={"segment_id": "big-shoes", "name": "x", "rule": rule},
            headers=HEADERS,
        ).status_code
        == 409
    )
    invalid = {"name": "bad", "rule": {"field": "shoe_size", "op": "eq", "value": 1}}
    assert client.post("/v1/segments", json=invalid, headers=HEADERS).status_code == 422
    nul = {"name": "s\x00x", "rule": rule}
    response = client.post("/v1/segments", json=nul, headers=HEADERS)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "name"


@pytest.mark.parametrize(
    ("condition", "where", "code", "message"),
    [
        (
            {"field": "nope", "op": "eq", "value": 1},
            "field",
            "rule.field",
            "unknown field 'nope'; known: average_order_value, categories, channels, city, "
            "currency, expected_order_value, expected_purchases_30d, expected_purchases_365d, "
            "expected_purchases_90d, f_score, first_order_at, frequency, funnel_bucket, "
            "last_order_at, lifecycle_stage, m_score, monetary, order_count, p_alive, "
            "predicted_clv, predicted_clv_percentile, province, purchase_bucket, r_score, "
            "recency_days, rfm_code, rfm_segment, total_spent, value_quadrant",
        ),
        (
            {"field": "province", "op": "contains", "value": "x"},
            "op",
            "rule.op",
            "contains applies to categories or channels only",
        ),
        (
            {"field": "last_order_at", "op": "gt", "value": "yesterday"},
            "value",
            "rule.value",
            "last_order_at takes ISO 8601 timestamps with an offset",
        ),
        (
            {"field": "city", "op": "in", "value": ["杭州市", 1]},
            "value[1]",
            "rule.value",
            "city takes strings, not 1",
        ),
        (
            {"field": "r_score", "op": "between", "value": [1]},
            "value",
            "rule.value",
            "between takes [low, high]",
        ),
    ],
)
def test_a_bad_nested_condition_is_one_precise_error(
    client: TestClient, condition: dict, where: str, code: str, message: str
) -> None:
    rule = {
        "any": [
            {"field": "r_score", "op": "gte", "value": 4},
            {"all": [{"field": "frequency", "op": "gte", "value": 1}, {"not": condition}]},
        ]
    }
    response = client.post("/v1/segments", json={"name": "bad", "rule": rule}, headers=HEADERS)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"] == [
        {"field": f"rule.any[1].all[1].not.{where}", "code": code, "message": message}
    ]
    assert problem["detail"] == "1 invalid field(s)"
    assert client.get("/v1/segments", headers=READER).json()["items"] == []


def test_reports(client: TestClient) -> None:
    rfm = client.get("/v1/reports/rfm", headers=READER).json()["rows"][0]
    assert sum(c["customers"] for c in rfm["grid"]) == 2
    lifecycle = client.get("/v1/reports/lifecycle", headers=READER).json()["rows"]
    assert {r["lifecycle_stage"]: r["customers"] for r in lifecycle}["prospect"] == 1
    moves = client.get(
        "/v1/reports/lifecycle", params={"since": "2026-11-01T00:00:00+08:00"}, headers=READER
    ).json()["rows"][0]["transitions"]
    assert {"from": "none", "to": "prospect", "customers": 1} in moves
    funnel = client.get("/v1/reports/funnel", headers=READER).json()["rows"]
    assert funnel[1] == {
        "bucket": "2",
        "customers": 1,
        "orders": 2,
        "revenue": {"CNY": "500.00"},
        "average_order_value": {"CNY": "250.00"},
    }
    quadrants = client.get("/v1/reports/quadrants", headers=READER).json()["rows"]
    assert sum(q["customers"] for q in quadrants) == 2
    regions = client.get("/v1/reports/regions", headers=READER).json()["rows"]
    assert {r["province"]: r["customers"] for r in regions} == {"广东省": 1, "浙江省": 2}
    assert client.get("/v1/reports/nothing", headers=READER).status_code == 422


def test_clv_summary(client: TestClient) -> None:
    body = client.get("/v1/customers/alice/clv-summary", headers=READER).json()
    assert body == {
        "customer_id": "alice",
        "frequency": 1,
        "recency": 18,
        "T": 20,
        "monetary_value": "300.0000",
        "currency": "CNY",
        "as_of": NOW.isoformat().replace("+00:00", "Z"),
        "policy_version": 1,
    }
    bulk = client.get("/v1/clv-summary", headers=READER).json()["items"]
    assert [b["customer_id"] for b in bulk] == ["alice", "bob"]
    assert client.get("/v1/customers/nobody/clv-summary", headers=READER).status_code == 404


def test_clv_summary_of_a_customer_who_switched_currency_is_in_their_latest(
    client: TestClient,
) -> None:
    runtime = client.app_state  # type: ignore[attr-defined]
    orders = [
        order("sw-1", "switcher", days_ago=40, amount="1000.00", currency="USD"),
        order("sw-2", "switcher", days_ago=30, amount="900.00", currency="USD"),
        order("sw-3", "switcher", days_ago=20, amount="10.00", currency="EUR"),
        order("sw-4", "switcher", days_ago=10, amount="30.00", currency="EUR"),
    ]
    with runtime.db.unit_of_work() as session:
        per_event.apply_messages(session, [recorded(o) for o in orders], NOW)
    body = client.get("/v1/customers/switcher/clv-summary", headers=READER).json()
    # the EUR purchases only (as the EUR fit sees them), not USD and EUR averaged
    assert body["currency"] == "EUR"
    assert (body["frequency"], body["recency"], body["T"]) == (1, 10, 20)
    assert body["monetary_value"] == "30.0000"


def test_a_longer_window_recounts_f_and_m(client: TestClient) -> None:
    runtime = client.app_state  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        per_event.apply_messages(
            session, [recorded(order("o9", "bob", days_ago=500, amount="70.00"))], NOW
        )
    assert client.get("/v1/customers/bob/scores", headers=READER).json()["frequency"] == 1
    policy = client.get("/v1/scoring-policy", headers=READER).json()["policy"]
    policy["window_days"] = 730
    assert client.put("/v1/scoring-policy", json=policy, headers=HEADERS).status_code == 200
    body = client.get("/v1/customers/bob/scores", headers=READER).json()
    assert body["frequency"] == 2 and body["monetary"] == "120.00"
    last = [e for e in outbox(client) if e.data.customer_id == "bob"][-1]
    assert last.data.current.frequency == 2 and last.data.policy_version == 2
