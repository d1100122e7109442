"""The walking skeleton through the real broker: projections from topics, audience endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.testing import wait_for
from services.campaign.app import create_app
from shared import topics
from shared.bus import Publisher
from tests.campaign.factories import broker_settings, policy_event, segment_event
from tests.conftest import ADMIN_KEY, api_client

HEADERS = {"X-API-Key": ADMIN_KEY}


@pytest.mark.kafka
def test_segment_and_profile_events_reach_the_audience_endpoint(
    broker, namespace, sqlite_url, tmp_path: Path
) -> None:
    settings = broker_settings(broker, namespace, sqlite_url, tmp_path)
    publisher = Publisher(broker.bootstrap_servers, namespace)
    with api_client(create_app(settings)) as client:
        assert client.get("/v1/audience/c-1", headers=HEADERS).status_code == 404
        publisher.send_event(topics.SEGMENTS, segment_event("c-1", segments=["vip"]))
        publisher.send_event(
            topics.PROFILES, policy_event("c-1", {"sms": True}, do_not_disturb=False)
        )
        publisher.producer.flush()

        def view() -> dict | None:
            r = client.get("/v1/audience/c-1", headers=HEADERS)
            body = r.json() if r.status_code == 200 else None
            return body if body and body["contact_policy"] else None

        body = wait_for(view, timeout=30, what="the projection of c-1")
        missing = client.get("/v1/audience/nobody", headers=HEADERS)
    publisher.close()
    assert body["rfm_segment"] == "champions"
    assert body["lifecycle_stage"] == "active"
    assert (body["r_score"], body["f_score"], body["m_score"]) == (5, 5, 5)
    assert body["segments"] == ["vip"]
    assert body["contact_policy"]["channels"]["sms"]["consented"] is True
    assert body["erased"] is False
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
