"""Through the real broker: consumed events build the profile the API serves, and the
profile's own events reach crm.profiles.v1 through the outbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.testing import read_topic, unique, wait_for
from services.profile.app import create_app
from services.profile.config import Settings
from shared import topics
from shared.bus import Publisher
from tests.conftest import ADMIN_KEY, api_client
from tests.profile.profile_factories import order, segment_changed

pytestmark = pytest.mark.kafka
HEADERS = {"X-API-Key": ADMIN_KEY}


def test_events_build_the_profile_and_changes_are_published(
    broker: Any, namespace: str, db_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_namespace=namespace,
        data_dir=tmp_path,
        database_url=db_url,
        api_key=ADMIN_KEY,
        consumer_group=unique("g"),
        run_consumer=True,
    )
    publisher = Publisher(broker.bootstrap_servers, namespace)
    with api_client(create_app(settings)) as client:
        first = order(
            "c-1",
            "o-1",
            "created",
            buyer={"name": "张三", "mobile": "13800138000"},
            shipping={"province": "浙江省", "city": "杭州市"},
        )
        events = [
            (topics.ORDERS, first),
            (topics.ORDERS, order("c-1", "o-1", "paid", minutes=3)),
            (topics.ORDERS, order("c-1", "o-1", "paid", minutes=3)),  # redelivered version
            (topics.SEGMENTS, segment_changed("c-1", rfm_segment="new", lifecycle_stage="new")),
        ]
        publisher.publish_all(
            [(t, e.key, e.model_dump_json(by_alias=True).encode()) for t, e in events]
        )
        publisher.send_event(topics.ORDERS, first)  # the same event twice: deduplicated
        publisher.producer.flush()

        def ready() -> dict[str, Any] | None:
            r = client.get("/v1/customers/c-1", headers=HEADERS)
            body = r.json() if r.status_code == 200 else None
            if body and body["scores"]["rfm_segment"] and body["transactions"]["order_count"]:
                return body
            return None

        body = wait_for(ready, timeout=30, what="profile with the order and the scores")
        assert body["transactions"]["order_count"] == 1
        assert body["transactions"]["total_spent"] == "199.00"
        assert body["scores"]["rfm_segment"] == "new"
        assert body["basic"]["mobiles"] == ["+8613800138000"]  # admin ("*") sees personal data
        response = client.put(
            "/v1/customers/c-1/contact-policy",
            json={
                "channels": {"sms": {"consented": False, "source": "unsubscribe link"}},
                "do_not_disturb": True,
            },
            headers=HEADERS,
        )
        assert response.status_code == 200, response.text
        published = read_topic(
            broker.bootstrap_servers, namespace + topics.PROFILES, expect=2, timeout=20
        )
    publisher.close()
    kinds = {e.type: e for e in published}
    assert kinds["profile.updated"].data.province == "浙江省"
    assert kinds["profile.updated"].data.city == "杭州市"
    policy = kinds["profile.contact_policy_changed"].data
    assert policy.customer_id == "c-1" and policy.do_not_disturb
    assert policy.channels["sms"].consented is False
