"""Unmerge: a merge split back by its merge_id gives each id its own facts and orders."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import orjson
from fastapi.testclient import TestClient

from tests.conftest import ADMIN_KEY, outbox_values
from tests.profile.profile_factories import customer, feed, interaction, order

WRITER = {"X-API-Key": ADMIN_KEY}


def profile(client: TestClient, customer_id: str) -> dict[str, object]:
    response = client.get(f"/v1/customers/{customer_id}", headers=WRITER)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_unmerge_gives_each_id_its_facts_and_orders_back(client: TestClient) -> None:
    feed(
        client,
        customer("a", name="张三", mobiles=["13800138000"]),
        customer("b", name="李四", mobiles=["13900139000"]),
        order("a", "o1"),
        order("b", "o2", created_minutes=5),
        order("b", "o3", created_minutes=9),
        interaction("b", "i1", "review", rating=5, text="好"),
    )
    consent = {"channels": {"sms": {"consented": True}}}
    put = client.put("/v1/customers/b/contact-policy", json=consent, headers=WRITER)
    assert put.status_code == 200, put.text
    merged = client.post(
        "/v1/customers/a/merge", json={"merge_ids": ["b"], "reason": "wrong"}, headers=WRITER
    )
    merge_id = merged.json()["merge_id"]
    assert profile(client, "b")["customer_id"] == "a"
    assert profile(client, "a")["transactions"]["order_count"] == 3  # type: ignore[index]

    split = client.post(f"/v1/merges/{merge_id}/unmerge", headers=WRITER)
    assert split.status_code == 200, split.text
    assert split.json() == {"merge_id": merge_id, "survivor_id": "a", "restored_ids": ["b"]}

    a, b = profile(client, "a"), profile(client, "b")
    assert b["customer_id"] == "b"
    assert a["transactions"]["order_count"] == 1  # type: ignore[index]
    assert b["transactions"]["order_count"] == 2  # type: ignore[index]
    assert a["basic"]["name"] == "张三" and b["basic"]["name"] == "李四"  # type: ignore[index]
    assert a["basic"]["mobiles"] == ["+8613800138000"]  # type: ignore[index]
    assert b["basic"]["mobiles"] == ["+8613900139000"]  # type: ignore[index]
    assert b["transactions"]["reviews"]["count"] == 1  # type: ignore[index]
    assert a["transactions"]["reviews"]["count"] == 0  # type: ignore[index]
    # audited on both, published
    for pid in ("a", "b"):
        audit = client.get(f"/v1/customers/{pid}/audit", headers=WRITER).json()["audit"]
        assert audit[-1]["action"] == "unmerge" and audit[-1]["detail"]["merge_id"] == merge_id
    events = [orjson.loads(v) for v in outbox_values(client)]
    [unmerged] = [e for e in events if e["type"] == "profile.unmerged"]
    assert unmerged["data"]["restored_ids"] == ["b"]
    assert unmerged["data"]["customer_ids"] == {"b": ["b"]}
    # b's contact policy travels with the event (campaign ignored b's own while merged)
    policies = unmerged["data"]["contact_policies"]
    assert policies["b"]["customer_id"] == "b"
    assert policies["b"]["channels"]["sms"]["consented"] is True
    # a merge cannot be split twice; an unknown one is 404
    again = client.post(f"/v1/merges/{merge_id}/unmerge", headers=WRITER)
    assert again.status_code == 409 and again.json()["type"].endswith("/unmerge-not-possible")
    assert client.post("/v1/merges/nope/unmerge", headers=WRITER).status_code == 404
    # b's new orders count for b alone
    feed(client, order("b", "o4", created_minutes=20))
    assert profile(client, "b")["transactions"]["order_count"] == 3  # type: ignore[index]
    assert profile(client, "a")["transactions"]["order_count"] == 1  # type: ignore[index]


def test_parallel_unmerges_of_one_merge_split_it_once(client: TestClient) -> None:
    """Two unmerges at once: one 200, the other 409 unmerge-not-possible (never a 500)."""
    feed(client, customer("a", name="张三"), customer("b", name="李四"), order("b", "o2"))
    merged = client.post(
        "/v1/customers/a/merge", json={"merge_ids": ["b"], "reason": "wrong"}, headers=WRITER
    )
    merge_id = merged.json()["merge_id"]
    barrier = threading.Barrier(2)

    def unmerge(_: int) -> int:
        barrier.wait()
        return client.post(f"/v1/merges/{merge_id}/unmerge", headers=WRITER).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(unmerge, range(2)))
    assert statuses == [200, 409]
    assert profile(client, "b")["customer_id"] == "b"
    assert profile(client, "b")["transactions"]["order_count"] == 1  # type: ignore[index]
