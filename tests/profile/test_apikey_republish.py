"""Managed keys survive a broker that lost its data (issue 15, outside test): profile's
database is their home, and profile queues them again for an emptied key topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from devtools.testing import unique, wait_for
from services.profile.apikey_republish import KeyRepublisher
from services.profile.app import create_app
from services.profile.config import Settings
from shared.apikeys import APIKEY_USAGE_TOPIC, APIKEYS_TOPIC, KeyDirectory, KeyFeed
from tests.conftest import ADMIN_KEY, api_client

pytestmark = pytest.mark.kafka
ADMIN = {"X-API-Key": ADMIN_KEY}


def settings_for(broker: Any, namespace: str, db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        consumer_group=unique("g"),
        run_consumer=False,
        apikey_republish_check_seconds=0.5,
    )


def follow(broker: Any, namespace: str) -> tuple[KeyDirectory, KeyFeed]:
    directory = KeyDirectory()
    feed = KeyFeed(broker.bootstrap_servers, directory, namespace, partitions=3)
    feed.start()
    return directory, feed


def test_keys_come_back_when_the_broker_lost_them(broker: Any, db_url: str, tmp_path: Path) -> None:
    first = unique("ns") + "."
    with api_client(create_app(settings_for(broker, first, db_url, tmp_path))) as client:
        keys = []
        for name in ("shop", "bi"):
            response = client.post(
                "/v1/api-keys", json={"name": name, "scopes": ["profile:read"]}, headers=ADMIN
            )
            assert response.status_code == 201, response.text
            keys.append(response.json())
        revoked = keys[1]["key_id"]
        assert client.post(f"/v1/api-keys/{revoked}/revoke", headers=ADMIN).status_code == 200
        directory, feed = follow(broker, first)
        try:
            assert wait_for(lambda: len(directory) == 2, timeout=20)
        finally:
            feed.stop()
        republisher: KeyRepublisher = client.app.state.runtime.key_republisher  # type: ignore[attr-defined]
        assert republisher.check() == 0  # the broker holds them: nothing queued again
        # both key topics have the configured partitions (no topic drift reported)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        try:
            described = admin.describe_topics([first + APIKEYS_TOPIC, first + APIKEY_USAGE_TOPIC])
        finally:
            admin.close()
        assert [len(t["partitions"]) for t in described] == [3, 3]

    # the broker restarted empty (a fresh namespace: its key topic holds nothing)
    emptied = unique("ns") + "."
    with api_client(create_app(settings_for(broker, emptied, db_url, tmp_path))) as client:
        directory, feed = follow(broker, emptied)
        try:
            assert wait_for(lambda: len(directory) == 2, timeout=20)
            active = directory.get(keys[0]["key_id"])
            assert active is not None and active.revoked_at is None
            gone = directory.get(revoked)
            assert gone is not None and gone.revoked_at is not None  # still revoked
        finally:
            feed.stop()
        # profile's own API knows the key again too (its feed reads the same topic)
        key = {"X-API-Key": keys[0]["api_key"]}
        assert wait_for(
            lambda: client.get("/v1/customers", headers=key).status_code == 200, timeout=20
        )
