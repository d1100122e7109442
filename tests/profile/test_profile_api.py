"""The REST API without a broker: masking by scope, edits, tags, policy, search, export,
erasure. Published events are checked in the outbox (the relay is not running)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.profile import consuming
from services.profile.app import create_app
from services.profile.config import Settings
from shared.runtime import ServiceRuntime
from tests.conftest import ADMIN_KEY
from tests.profile.profile_factories import customer, interaction, order, segment_changed

ADMIN = {"X-API-Key": ADMIN_KEY}
READER = {"X-API-Key": "reader-key"}
PII = {"X-API-Key": "pii-key"}
WRITER = {"X-API-Key": "writer-key"}


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=sqlite_url,
        api_key=ADMIN_KEY,
        api_keys={
            "reader-key": ["profile:read"],
            "pii-key": ["profile:read", "pii:read"],
            "writer-key": ["profile:*"],
        },
        run_consumer=False,
    )
    app = create_app(settings, start_runtime=False)
    runtime: ServiceRuntime = app.state.runtime
    runtime.migrate()
    with TestClient(app) as test_client:
        yield test_client
    runtime.db.dispose()


def feed(client: TestClient, *events: Any) -> None:
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        consuming.apply_events(session, list(events), runtime.settings)  # type: ignore[arg-type]


def outbox(client: TestClient) -> list[dict[str, Any]]:
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.sessions() as session:
        rows = session.execute(text("SELECT value FROM outbox ORDER BY id")).scalars().all()
    return [orjson.loads(v) for v in rows]


def db_dump(client: TestClient) -> str:
    """Every row of every table, as text (to prove personal data is gone)."""
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    parts = []
    with runtime.db.sessions() as session:
        names = (
            session.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
            .scalars()
            .all()
        )
        for name in names:
            for row in session.execute(text(f'SELECT * FROM "{name}"')):
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


ZHANG = order(
    "tb_zhangsan88",
    "T1",
    buyer={"name": "张三", "mobile": "+86 138 0013 8000", "email": "zhangsan@example.com"},
    shipping={"province": "浙江省", "city": "杭州市", "address": "文三路 100 号"},
)


def test_unknown_customer_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/v1/customers/nobody", headers=READER)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/customers/nobody").status_code == 401


def test_personal_data_is_masked_without_pii_scope(client: TestClient) -> None:
    feed(client, ZHANG, segment_changed("tb_zhangsan88", rfm_segment="new"))
    masked = client.get("/v1/customers/tb_zhangsan88", headers=READER).json()
    assert masked["basic"]["mobiles"] == ["138****8000"]
    assert masked["basic"]["name"] == "张*"
    assert masked["basic"]["emails"] == ["z***@example.com"]
    assert masked["basic"]["address"] == {"province": "浙江省", "city": "杭州市", "address": "****"}
    assert "8000" not in orjson.dumps(masked["provenance"]).decode().replace("138****8000", "")
    assert masked["pii_masked"] is True
    full = client.get("/v1/customers/tb_zhangsan88", headers=PII).json()
    assert full["basic"]["mobiles"] == ["+8613800138000"]
    assert full["basic"]["name"] == "张三"
    assert full["transactions"]["order_count"] == 1
    assert full["scores"]["rfm_segment"] == "new"
    for key in (
        "customer_id",
        "basic",
        "subjective",
        "transactions",
        "scores",
        "segments",
        "tags",
        "contact_policy",
        "data_quality",
    ):
        assert key in full
    # export needs pii:read
    assert client.get("/v1/customers/tb_zhangsan88/export", headers=READER).status_code == 403
    # writing needs profile:write
    assert (
        client.patch("/v1/customers/tb_zhangsan88", json={"name": "x"}, headers=READER).status_code
        == 403
    )


def test_patch_wins_over_derived_data(client: TestClient) -> None:
    feed(client, ZHANG)
    response = client.patch(
        "/v1/customers/tb_zhangsan88",
        json={
            "name": "张叁",
            "style": "minimal",
            "membership_interest": True,
            "address": {"province": "上海市", "city": "上海市"},
        },
        headers=WRITER,
    )
    assert response.status_code == 200, response.text
    # a newer order still carries the old name: the operator's edit stays
    feed(client, order("tb_zhangsan88", "T2", minutes=600, buyer={"name": "张三"}))
    body = client.get("/v1/customers/tb_zhangsan88", headers=PII).json()
    assert body["basic"]["name"] == "张叁"
    assert body["provenance"]["name"]["source"] == "operator"
    assert body["subjective"]["entered"]["style"] == "minimal"
    assert body["subjective"]["entered"]["membership_interest"] is True
    assert body["data_quality"]["conflicts"][0]["field"] in ("address", "name")
    updates = [e for e in outbox(client) if e["type"] == "profile.updated"]
    assert updates[-1]["data"]["province"] == "上海市"
    assert (
        client.patch(
            "/v1/customers/tb_zhangsan88", json={"mobiles": ["garbage"]}, headers=WRITER
        ).status_code
        == 422
    )
    # gender: normalised as ingest normalises it (shared.vocabulary), not stored as sent
    for sent, stored in (("男", "male"), ("F", "female"), ("保密", "unknown")):
        response = client.patch(
            "/v1/customers/tb_zhangsan88", json={"gender": sent}, headers=WRITER
        )
        assert response.status_code == 200, response.text
        basic = client.get("/v1/customers/tb_zhangsan88", headers=PII).json()["basic"]
        assert basic["gender"] == stored
    robot = client.patch("/v1/customers/tb_zhangsan88", json={"gender": "robot"}, headers=WRITER)
    assert robot.status_code == 422 and robot.json()["errors"][0]["field"] == "gender"
    assert robot.json()["errors"][0]["code"] == "gender.unknown"  # the code ingest reports
    for body in (
        b'{"name": "\\u738b\\u0000"}',  # a NUL byte
        b'{"name": "\\u738b\\udc00"}',  # a lone surrogate
        b'{"name": "' + b"x" * 20_000 + b'"}',
    ):
        response = client.patch(
            "/v1/customers/tb_zhangsan88",
            content=body,
            headers={**WRITER, "content-type": "application/json"},
        )
        assert response.status_code == 422, body[:40]
        assert response.json()["errors"][0]["field"] == "name"
    response = client.post(
        "/v1/customers/tb_zhangsan88/tags", json={"tags": ["v\x00ip"]}, headers=WRITER
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "tags[0]"


def test_manual_tags_rules_counts_and_profile_updated(client: TestClient) -> None:
    feed(client, ZHANG, order("other", "T9"))
    r = client.post(
        "/v1/customers/tb_zhangsan88/tags", json={"tags": ["vip", "gift"]}, headers=WRITER
    )
    assert r.status_code == 201, r.text
    assert r.json()["manual"] == ["gift", "vip"]
    rule = {
        "all": [
            {"field": "reviews", "op": "gte", "value": 1},
            {"field": "good_reviews", "op": "gte", "value": 1},
        ]
    }
    r = client.post("/v1/tag-rules", json={"tag": "good-review", "rule": rule}, headers=WRITER)
    assert r.status_code == 201, r.text
    assert (
        client.post(
            "/v1/tag-rules",
            json={"tag": "bad", "rule": {"field": "x", "op": "eq", "value": 1}},
            headers=WRITER,
        ).status_code
        == 422
    )
    # the rule applies as profiles change
    feed(client, interaction("other", "i1", "review", rating=5))
    assert client.get("/v1/customers/other/tags", headers=READER).json()["by_rule"] == [
        "good-review"
    ]
    counts = {c["tag"]: c for c in client.get("/v1/tags", headers=READER).json()["items"]}
    assert counts["vip"]["customers"] == 1 and counts["good-review"]["by_rule"] == 1
    found = client.get("/v1/customers", params={"tag": "good-review"}, headers=READER).json()
    assert [i["customer_id"] for i in found["items"]] == ["other"]
    assert client.delete("/v1/customers/tb_zhangsan88/tags/gift", headers=WRITER).json()[
        "manual"
    ] == ["vip"]
    assert client.delete("/v1/customers/other/tags/good-review", headers=WRITER).status_code == 409
    published = [e["data"] for e in outbox(client) if e["type"] == "profile.updated"]
    assert {
        "customer_id": "other",
        "tags": ["good-review"],
        "province": None,
        "city": None,
        "timezone": None,
    } in published
    assert any(p["customer_id"] == "tb_zhangsan88" and p["tags"] == ["vip"] for p in published)
    rule_id = client.get("/v1/tag-rules", headers=READER).json()["items"][0]["rule_id"]
    assert client.delete(f"/v1/tag-rules/{rule_id}", headers=WRITER).status_code == 204
    assert client.get("/v1/customers/other/tags", headers=READER).json()["tags"] == []


def test_contact_policy_put_and_publish(client: TestClient) -> None:
    feed(client, ZHANG)
    policy = {
        "channels": {
            "sms": {"consented": True, "source": "checkout"},
            "email": {"consented": False},
        },
        "do_not_disturb": False,
        "quiet_hours": {"start": "21:00", "end": "09:00", "timezone": "Asia/Shanghai"},
        "max_contacts": 4,
        "period_days": 30,
    }
    r = client.put("/v1/customers/tb_zhangsan88/contact-policy", json=policy, headers=WRITER)
    assert r.status_code == 200, r.text
    assert r.json()["channels"]["sms"]["consented"] is True
    assert r.json()["channels"]["email"]["at"] is not None
    got = client.get("/v1/customers/tb_zhangsan88", headers=READER).json()["contact_policy"]
    assert got["max_contacts"] == 4 and got["quiet_hours"]["start"] == "21:00"
    changed = [e for e in outbox(client) if e["type"] == "profile.contact_policy_changed"]
    assert changed[-1]["data"]["customer_id"] == "tb_zhangsan88"
    assert changed[-1]["data"]["max_contacts"] == 4
    bad = {**policy, "quiet_hours": {"start": "25:00", "end": "09:00"}}
    assert (
        client.put(
            "/v1/customers/tb_zhangsan88/contact-policy", json=bad, headers=WRITER
        ).status_code
        == 422
    )
    assert (
        client.put(
            "/v1/customers/tb_zhangsan88/contact-policy",
            json={**policy, "customer_id": "someone-else"},
            headers=WRITER,
        ).status_code
        == 422
    )


def test_consent_and_tags_before_the_first_order_are_kept_and_apply(client: TestClient) -> None:
    policy = {"channels": {"sms": {"consented": True, "source": "registration"}}}
    put = client.put("/v1/customers/new-member/contact-policy", json=policy, headers=WRITER)
    assert put.status_code == 200, put.text
    tagged = client.post("/v1/customers/new-member/tags", json={"tags": ["signup"]}, headers=WRITER)
    assert tagged.status_code in (200, 201), tagged.text
    changed = [e for e in outbox(client) if e["type"] == "profile.contact_policy_changed"]
    assert changed[-1]["key"] == "new-member"  # campaign keeps it from crm.profiles.v1
    assert changed[-1]["data"]["channels"]["sms"]["consented"] is True
    # the first order arrives later, with a data time before the registration
    feed(client, order("new-member", "N1", buyer={"name": "新会员"}))
    body = client.get("/v1/customers/new-member", headers=PII).json()
    assert body["contact_policy"]["channels"]["sms"]["consented"] is True
    assert body["tags"] == ["signup"]
    assert body["transactions"]["order_count"] == 1
    assert body["basic"]["name"] == "新会员"
    # an id that is not one is not registered
    bidi = client.put("/v1/customers/x%E2%80%AEy/contact-policy", json=policy, headers=WRITER)
    assert bidi.status_code == 422


def test_search_filters_and_cursor(client: TestClient) -> None:
    feed(
        client,
        *[
            order(f"c{i:02d}", f"o{i}", shipping={"province": "浙江省", "city": "杭州市"})
            for i in range(5)
        ],
        order(
            "bj",
            "o-bj",
            buyer={"mobile": "13911112222", "email": "Bj@Example.com"},
            shipping={"province": "北京市", "city": "北京市"},
        ),
        segment_changed("c01", lifecycle_stage="active", segments=["s1"]),
    )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"province": "浙江省", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/customers", params=params, headers=READER).json()
        seen += [i["customer_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["c00", "c01", "c02", "c03", "c04"]
    by = {
        "mobile": "１３９-1111-2222",
        "email": "BJ@example.com",
        "customer_id": "bj",
        "city": "北京市",
    }
    for key, value in by.items():
        items = client.get("/v1/customers", params={key: value}, headers=PII).json()["items"]
        assert [i["customer_id"] for i in items] == ["bj"], key
    # no PII oracle: without pii:read, a search by mobile or e-mail is refused, whether or
    # not the value belongs to a customer
    for key, value in (("mobile", "13911112222"), ("mobile", "13000000000"), ("email", "x@y.z")):
        refused = client.get("/v1/customers", params={key: value}, headers=READER)
        assert refused.status_code == 403, key
        assert "pii:read" in refused.json()["detail"]
    items = client.get("/v1/customers", params={"city": "北京"}, headers=READER).json()["items"]
    assert items[0]["mobiles"] == ["139****2222"]
    for key, value in (("segment", "s1"), ("lifecycle_stage", "active")):
        items = client.get("/v1/customers", params={key: value}, headers=READER).json()["items"]
        assert [i["customer_id"] for i in items] == ["c01"]
    assert (
        client.get("/v1/customers", params={"cursor": "junk!"}, headers=READER).status_code == 400
    )


def test_manual_merge_is_audited_and_published(client: TestClient) -> None:
    feed(client, order("a", "o1"), order("b", "o2", created_minutes=5))
    r = client.post(
        "/v1/customers/a/merge", json={"merge_ids": ["b"], "reason": "same person"}, headers=WRITER
    )
    assert r.status_code == 200, r.text
    assert client.get("/v1/customers/b", headers=READER).json()["transactions"]["order_count"] == 2
    audit = client.get("/v1/customers/a/audit", headers=READER).json()["audit"]
    assert audit[-1]["action"] == "merge" and audit[-1]["detail"]["merged_ids"] == ["b"]
    merged = [e for e in outbox(client) if e["type"] == "profile.merged"]
    assert merged[0]["data"]["survivor_id"] == "a" and merged[0]["data"]["merged_ids"] == ["b"]


def test_export_then_erasure_leaves_no_personal_data_and_replay_is_blocked(
    client: TestClient,
) -> None:
    events = [
        ZHANG,
        customer("tb_zhangsan88", name="张三", wechat="zhangsan_wx", mobiles=["13800138000"]),
        interaction("tb_zhangsan88", "i1", "review", rating=5, text="很好"),
        segment_changed("tb_zhangsan88"),
    ]
    feed(client, *events)
    client.post("/v1/customers/tb_zhangsan88/tags", json={"tags": ["vip"]}, headers=WRITER)
    exported = client.get("/v1/customers/tb_zhangsan88/export", headers=PII).json()
    assert exported["profile"]["basic"]["name"] == "张三"
    assert exported["orders"][0]["order_id"] == "T1"
    assert exported["interactions"][0]["text"] == "很好"
    assert exported["customer_ids"] == ["tb_zhangsan88"]

    r = client.delete("/v1/customers/tb_zhangsan88", headers=WRITER)
    assert r.status_code == 200, r.text
    erasure_id = r.json()["erasure_id"]
    assert client.get("/v1/customers/tb_zhangsan88", headers=PII).status_code == 404
    erased = [e for e in outbox(client) if e["type"] == "profile.erased"]
    assert erased[0]["data"]["customer_id"] == "tb_zhangsan88"
    # replaying every old event does not bring the customer back
    feed(client, *events)
    assert client.get("/v1/customers/tb_zhangsan88", headers=PII).status_code == 404
    assert (
        client.get("/v1/customers", params={"mobile": "13800138000"}, headers=PII).json()["items"]
        == []
    )
    dump = db_dump(client)
    # the outbox still holds the erasure event (keyed by id); nothing else about them
    dump = "\n".join(line for line in dump.splitlines() if "profile.erased" not in line)
    for personal in ("张三", "8613800138000", "zhangsan", "文三路", "很好", "tb_zhangsan88"):
        assert personal not in dump, personal
    audit = client.get(f"/v1/erasures/{erasure_id}", headers=READER).json()["audit"]
    assert [a["action"] for a in audit][-1] == "erase"
    # a customer record that tells no time of its own (no updated_at; its envelope is
    # newer than the erasure) does not bring them back either
    record = customer("tb_zhangsan88", name="张三")
    undated = record.model_copy(
        update={"data": record.data.model_copy(update={"updated_at": None})}
    )
    assert undated.data.updated_at is None
    feed(client, undated)
    assert client.get("/v1/customers/tb_zhangsan88", headers=PII).status_code == 404
    # a genuinely new order after the erasure starts a new relationship
    feed(client, order("tb_zhangsan88", "T-new", minutes=10**7))
    assert client.get("/v1/customers/tb_zhangsan88", headers=READER).status_code == 200


def test_get_customer_on_both_backends(tmp_path: Path, db_url: str) -> None:
    # GET reads on the event loop on SQLite and through the thread pool otherwise
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
    try:
        with TestClient(app) as test_client:
            feed(test_client, ZHANG, segment_changed("tb_zhangsan88", rfm_segment="new"))
            body = test_client.get("/v1/customers/tb_zhangsan88", headers=READER).json()
            assert body["customer_id"] == "tb_zhangsan88"
            assert body["basic"]["mobiles"] == ["138****8000"]
            assert body["scores"]["rfm_segment"] == "new"
            assert test_client.get("/v1/customers/nobody", headers=READER).status_code == 404
    finally:
        runtime.db.dispose()


def test_search_and_edits_normalise_regions_like_ingest(client: TestClient) -> None:
    feed(
        client,
        ZHANG,
        # a city of another province is kept as ingest sent it, and found by either name
        order("nj", "o-nj", shipping={"province": "浙江省", "city": "南京市"}),
    )
    for params, expected in (
        ({"city": "杭州"}, ["tb_zhangsan88"]),
        ({"city": "杭 州"}, ["tb_zhangsan88"]),
        ({"city": "Hangzhou"}, ["tb_zhangsan88"]),
        ({"province": "浙江", "city": "杭州市"}, ["tb_zhangsan88"]),
        ({"province": "zhejiang"}, ["nj", "tb_zhangsan88"]),
        ({"city": "南京"}, ["nj"]),
        ({"province": "江苏"}, []),
    ):
        page = client.get("/v1/customers", params=params, headers=READER).json()
        assert [i["customer_id"] for i in page["items"]] == expected, params
    # an address city typed in pinyin is stored under its full name and found by it
    feed(client, ZHANG, order("hz", "o-hz"))
    response = client.patch(
        "/v1/customers/hz", json={"address": {"city": "Hangzhou"}}, headers=WRITER
    )
    assert response.status_code == 200, response.text
    body = client.get("/v1/customers/hz", headers=READER).json()
    assert body["basic"]["address"]["city"] == "杭州市", body["basic"]
    page = client.get("/v1/customers", params={"city": "杭州"}, headers=READER).json()
    assert [i["customer_id"] for i in page["items"]] == ["hz", "tb_zhangsan88"]
    # an operator's address is normalised the same way, and found by the same search
    response = client.patch(
        "/v1/customers/nj",
        json={"address": {"province": "重庆", "city": "万州", "address": "沙龙路 1 号"}},
        headers=WRITER,
    )
    assert response.status_code == 200, response.text
    assert response.json()["basic"]["address"] == {
        "province": "重庆市",
        "city": "重庆市",
        "district": "万州区",
        "address": "****",
    }
    found = client.get("/v1/customers", params={"city": "重庆"}, headers=READER).json()["items"]
    assert [i["customer_id"] for i in found] == ["nj"]
    assert [e for e in outbox(client) if e["type"] == "profile.updated"][-1]["data"][
        "city"
    ] == "重庆市"
    # and a city of another province entered by an operator is reported, not corrected
    client.patch(
        "/v1/customers/nj", json={"address": {"province": "浙江", "city": "南京"}}, headers=WRITER
    )
    conflicts = client.get("/v1/customers/nj", headers=READER).json()["data_quality"]["conflicts"]
    mismatch = [c for c in conflicts if c["reason"] == "city_not_in_province"]
    assert mismatch == [
        {
            "field": "address",
            "reason": "city_not_in_province",
            "value": {"province": "浙江省", "city": "南京市"},
            "source": "operator",
            "alternatives": [],
            "city_province": "江苏省",
        }
    ]


def test_search_answers_a_page_of_summaries(client: TestClient) -> None:
    feed(client, ZHANG, order("other", "T9"))
    first = client.get("/v1/customers", params={"limit": 1}, headers=READER).json()
    assert set(first) == {"items", "next_cursor"} and first["next_cursor"]
    assert first["items"] == [
        {
            "customer_id": "other",
            "name": None,
            "mobiles": [],
            "emails": [],
            "province": None,
            "city": None,
            "tags": [],
            "segments": [],
            "lifecycle_stage": None,
            "rfm_segment": None,
            "order_count": 1,
            "total_spent": "199.00",
            "currency": "CNY",
        }
    ]
    last = client.get(
        "/v1/customers", params={"limit": 1, "cursor": first["next_cursor"]}, headers=READER
    ).json()
    assert [i["customer_id"] for i in last["items"]] == ["tb_zhangsan88"]
    assert last["next_cursor"] is None
    schema = client.get("/openapi.json").json()["paths"]["/v1/customers"]["get"]
    assert "CustomerSummary" in orjson.dumps(schema["responses"]["200"]).decode()


_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?P<offset>Z|[+-]\d{2}:\d{2})?"
)


def timestamps(value: Any) -> list[str]:
    """Every string in a JSON answer that is a date and time."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in timestamps(v)]
    if isinstance(value, list):
        return [t for v in value for t in timestamps(v)]
    if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
        return [value]
    return []


@pytest.fixture
def any_client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """A client on SQLite (which hands timestamps back without their offset) and on
    PostgreSQL."""
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        api_keys={"pii-key": ["profile:read", "pii:read"], "writer-key": ["profile:*"]},
        run_consumer=False,
    )
    app = create_app(settings, start_runtime=False)
    runtime: ServiceRuntime = app.state.runtime
    runtime.migrate()
    with TestClient(app) as test_client:
        yield test_client
    runtime.db.dispose()


def test_every_timestamp_answered_carries_an_offset(any_client: TestClient) -> None:
    client = any_client
    feed(
        client,
        ZHANG,
        order("tb_other", "T2", created_minutes=5),
        customer("tb_zhangsan88", name="张三", mobiles=["13800138000"]),
        interaction("tb_zhangsan88", "i1", "review", rating=5),
        segment_changed("tb_zhangsan88", first_order_at=datetime(2026, 11, 1, 2, 2, tzinfo=UTC)),
    )
    rule = {"tag": "buyer", "rule": {"field": "order_count", "op": "gte", "value": 1}}
    assert client.post("/v1/tag-rules", json=rule, headers=WRITER).status_code == 201
    client.post("/v1/customers/tb_zhangsan88/tags", json={"tags": ["vip"]}, headers=WRITER)
    client.patch("/v1/customers/tb_zhangsan88", json={"title": "buyer"}, headers=WRITER)
    # a consent time sent without an offset is UTC
    policy = {"channels": {"sms": {"consented": True, "at": "2026-11-01T10:00:00"}}}
    put = client.put("/v1/customers/tb_zhangsan88/contact-policy", json=policy, headers=WRITER)
    assert put.json()["channels"]["sms"]["at"] == "2026-11-01T10:00:00Z"
    client.post(
        "/v1/customers/tb_zhangsan88/merge", json={"merge_ids": ["tb_other"]}, headers=WRITER
    )
    answers = {
        "profile": client.get("/v1/customers/tb_zhangsan88", headers=PII).json(),
        "audit": client.get("/v1/customers/tb_zhangsan88/audit", headers=PII).json(),
        "export": client.get("/v1/customers/tb_zhangsan88/export", headers=PII).json(),
        "tag rules": client.get("/v1/tag-rules", headers=PII).json()["items"],
        "policy": put.json(),
    }
    erasure = client.delete("/v1/customers/tb_zhangsan88", headers=WRITER).json()
    answers["erasure"] = erasure
    answers["erasure audit"] = client.get(
        f"/v1/erasures/{erasure['erasure_id']}", headers=PII
    ).json()
    # the walk sees the timestamps read back from the database
    audit = answers["audit"]["audit"]
    assert [a["action"] for a in audit] == ["tag", "patch", "contact_policy", "merge"]
    export = answers["export"]
    read_back = [
        *(a["at"] for a in audit),
        export["merges"][0]["merged_at"],
        export["interactions"][0]["occurred_at"],
        answers["tag rules"][0]["created_at"],
        answers["erasure audit"]["audit"][-1]["at"],
        erasure["erased_at"],
        answers["profile"]["transactions"]["first_purchase_at"],
    ]
    for name, answer in answers.items():
        found = timestamps(answer)
        for stamp in found:
            match = _TIMESTAMP.fullmatch(stamp)
            assert match is not None and match["offset"], (name, stamp)
    everything = {t for answer in answers.values() for t in timestamps(answer)}
    assert set(read_back) <= everything


def test_the_subject_access_export_gives_audit_times_with_their_offset(
    client: TestClient,
) -> None:
    """The stored document's profile section: times with their offset, as the API gives
    them (SQLite hands the audit's times back naive)."""
    feed(client, ZHANG)
    client.post("/v1/customers/tb_zhangsan88/tags", json={"tags": ["vip"]}, headers=WRITER)
    created = client.post("/v1/customers/tb_zhangsan88/exports", headers=PII)
    assert created.status_code == 202, created.text
    audit = created.json()["document"]["profile"]["audit"]
    assert audit and all(datetime.fromisoformat(a["at"]).utcoffset() is not None for a in audit)
