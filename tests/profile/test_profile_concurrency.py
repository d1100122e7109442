"""Parallel writers on one profile lose nothing: REST edits against each other and against
the consumer's batches, on SQLite and PostgreSQL (services/profile/locking.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from services.profile import consuming
from services.profile.app import create_app
from services.profile.config import Settings
from shared.runtime import ServiceRuntime
from tests.conftest import ADMIN_KEY
from tests.profile.profile_factories import customer, order

ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        run_consumer=False,
    )
    app = create_app(settings, start_runtime=False)
    runtime: ServiceRuntime = app.state.runtime
    runtime.migrate()
    with TestClient(app) as test_client:
        yield test_client
    runtime.db.dispose()


def feed(client: TestClient, *events: Any) -> None:
    """One consumed batch, as the consumer loop runs it."""
    runtime: ServiceRuntime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        consuming.apply_events(session, list(events), runtime.settings)  # type: ignore[arg-type]


def parallel(count: int, call: Any) -> list[Any]:
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_twenty_parallel_tag_posts_keep_twenty_tags(client: TestClient) -> None:
    feed(client, customer("c-tags", name="王五"))
    responses = parallel(
        20,
        lambda i: client.post(
            "/v1/customers/c-tags/tags", json={"tags": [f"t{i:02d}"]}, headers=ADMIN
        ),
    )
    assert [r.status_code for r in responses] == [201] * 20
    tags = client.get("/v1/customers/c-tags/tags", headers=ADMIN).json()
    assert tags["manual"] == [f"t{i:02d}" for i in range(20)]
    # the tag index agrees with the profile
    counts = {t["tag"]: t for t in client.get("/v1/tags", headers=ADMIN).json()["items"]}
    assert all(f"t{i:02d}" in counts for i in range(20))
    print(f"\n20 parallel tag POSTs: {len(tags['manual'])} of 20 tags kept")


FIELDS = {
    "company": "杭州某某科技",
    "title": "采购经理",
    "industry": "retail",
    "wechat": "wx_zhao6",
    "qq": "12345678",
    "style": "minimal",
    "contact_tolerance": "high",
    "timezone": "Asia/Shanghai",
}


def test_eight_parallel_patches_of_different_fields_keep_all_eight(client: TestClient) -> None:
    feed(client, customer("c-patch", name="赵六"))
    items = list(FIELDS.items())
    responses = parallel(
        8,
        lambda i: client.patch(
            "/v1/customers/c-patch", json={items[i][0]: items[i][1]}, headers=ADMIN
        ),
    )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    body = orjson.dumps(client.get("/v1/customers/c-patch", headers=ADMIN).json()).decode()
    kept = [name for name, value in FIELDS.items() if value in body]
    assert kept == list(FIELDS), f"lost: {set(FIELDS) - set(kept)}"
    print(f"\n8 parallel PATCHes of different fields: {len(kept)} of 8 kept")


def test_edits_interleaved_with_consumer_batches_lose_nothing(client: TestClient) -> None:
    feed(client, customer("c-mix", name="钱七"))
    orders = [order("c-mix", f"mix-{i}", minutes=i) for i in range(12)]

    def write(i: int) -> int:
        if i % 2:
            feed(client, orders[i])  # a consumed batch folding one order
            return 200
        return int(
            client.post(
                "/v1/customers/c-mix/tags", json={"tags": [f"m{i:02d}"]}, headers=ADMIN
            ).status_code
        )

    results = parallel(12, write)
    assert results == [201, 200] * 6
    profile = client.get("/v1/customers/c-mix", headers=ADMIN).json()
    tags = client.get("/v1/customers/c-mix/tags", headers=ADMIN).json()["manual"]
    assert tags == [f"m{i:02d}" for i in range(0, 12, 2)]
    assert profile["transactions"]["order_count"] == 6
    print("\n6 tag POSTs interleaved with 6 consumed orders: 6 tags and 6 orders kept")
