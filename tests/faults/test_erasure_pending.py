"""Whatever the broker or a service does, an erasure reaches every service or stays
visibly pending (issue 12): profile, ingest and campaign run against the real broker while
segment is down. The erasure is applied and acknowledged by ingest and campaign, stays
pending for segment (``GET /v1/erasures/{id}``, the overdue gauge and one log line once
past the bound), and is applied by segment as soon as it runs."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from devtools.testing import unique, wait_for
from services.campaign.app import create_app as campaign_app
from services.campaign.config import Settings as CampaignSettings
from services.ingest.app import create_app as ingest_app
from services.ingest.config import Settings as IngestSettings
from services.profile.app import create_app as profile_app
from services.profile.config import Settings as ProfileSettings
from services.segment.app import create_app as segment_app
from services.segment.config import Settings as SegmentSettings
from shared.erasure_acks import APPLYING_SERVICES
from tests.conftest import ADMIN_KEY, api_client

pytestmark = pytest.mark.kafka
HEADERS = {"X-API-Key": ADMIN_KEY}


def statuses(client: TestClient, erasure_id: str) -> dict[str, str]:
    body = client.get(f"/v1/erasures/{erasure_id}", headers=HEADERS).json()
    return {s["service"]: s["status"] for s in body["services"]}


def test_an_erasure_stays_pending_for_a_service_that_is_down_until_it_runs(
    broker: Any, namespace: str, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.profile.erasure_acks")
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "topic_namespace": namespace,
        "api_key": ADMIN_KEY,
        "run_consumer": True,
    }

    def sqlite(name: str) -> dict[str, Any]:
        return {
            "data_dir": tmp_path / name,
            "database_url": f"sqlite:///{tmp_path / f'{name}.db'}",
            "consumer_group": unique(name),
        }

    customer = unique("tb_erase_me")
    order = {
        "order_id": unique("o"),
        "customer_id": customer,
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "88.00",
        "buyer": {"name": "欧阳锋", "mobile": "13912345678"},
    }
    with ExitStack() as running:
        profile = running.enter_context(
            api_client(
                profile_app(
                    ProfileSettings(
                        data_dir=tmp_path / "profile",
                        database_url=db_url,
                        consumer_group=unique("profile"),
                        erasure_overdue_minutes=0.05,  # 3 s: segment stays down longer
                        erasure_check_seconds=0.5,
                        **common,
                    )
                )
            )
        )
        ingest = running.enter_context(
            api_client(ingest_app(IngestSettings(**sqlite("ingest"), **common)))
        )
        running.enter_context(
            api_client(campaign_app(CampaignSettings(**sqlite("campaign"), **common)))
        )
        posted = ingest.post("/v1/orders", json=order, headers=HEADERS)
        assert posted.status_code == 202, posted.text
        wait_for(
            lambda: profile.get(f"/v1/customers/{customer}", headers=HEADERS).status_code == 200,
            timeout=40,
            what="the customer's profile",
        )
        erased = profile.delete(f"/v1/customers/{customer}", headers=HEADERS)
        assert erased.status_code == 200, erased.text
        erasure_id = erased.json()["erasure_id"]
        assert erased.json()["pending_services"] == list(APPLYING_SERVICES)
        started = time.monotonic()

        wait_for(
            lambda: (
                statuses(profile, erasure_id)
                == {"ingest": "applied", "campaign": "applied", "segment": "pending"}
            ),
            timeout=40,
            what="ingest and campaign to acknowledge the erasure",
        )
        acked = time.monotonic() - started
        wait_for(
            lambda: REGISTRY.get_sample_value("crm_erasures_overdue", {"service": "segment"}) == 1,
            timeout=20,
            what="the overdue gauge for segment",
        )
        wait_for(
            lambda: any(erasure_id in r.getMessage() for r in caplog.records),
            timeout=10,
            what="the overdue log line",
        )
        pending = profile.get("/v1/erasures?overdue=true", headers=HEADERS).json()["items"]
        assert [(i["erasure_id"], i["pending_services"]) for i in pending] == [
            (erasure_id, ["segment"])
        ]
        assert statuses(profile, erasure_id)["segment"] == "pending"
        down = time.monotonic() - started

        # segment starts: it reads the erasure from the topic and acknowledges it
        running.enter_context(
            api_client(segment_app(SegmentSettings(**sqlite("segment"), **common)))
        )
        wait_for(
            lambda: set(statuses(profile, erasure_id).values()) == {"applied"},
            timeout=60,
            what="segment to acknowledge the erasure",
        )
        healed = time.monotonic() - started
        wait_for(
            lambda: REGISTRY.get_sample_value("crm_erasures_overdue", {"service": "segment"}) == 0,
            timeout=20,
            what="the overdue gauge back to 0",
        )
        assert profile.get("/v1/erasures", headers=HEADERS).json()["items"] == []
        body = profile.get(f"/v1/erasures/{erasure_id}", headers=HEADERS).text
        assert customer not in body and "欧阳锋" not in body and "13912345678" not in body
    # once for segment (campaign, slower to start, may have crossed the 3 s bound too)
    logged = [r.getMessage() for r in caplog.records if erasure_id in r.getMessage()]
    segment_lines = [m for m in logged if "by segment" in m]
    assert len(segment_lines) == 1, logged
    print(
        f"\nerasure pending: 3 applying services, segment down {down:.1f} s; ingest and "
        f"campaign acknowledged after {acked:.1f} s, segment pending (overdue gauge 1, "
        f"{len(segment_lines)} log line) until it ran, applied {healed:.1f} s after the erasure; "
        "0 services left pending"
    )
