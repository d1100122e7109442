"""POST .../launch?wait=false: 202 at once, the launch runs in the background, GET polls it."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from devtools.testing import wait_for
from services.campaign.projection import apply_audience_events
from services.campaign.targeting import in_holdout
from tests.campaign.factories import policy_event, segment_event
from tests.campaign.test_api import ADMIN, CAMPAIGN, READER


@pytest.fixture
def client(client: TestClient) -> TestClient:
    """The API client, with twelve silent customers who accept SMS."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.unit_of_work() as session:
        apply_audience_events(
            session,
            [
                *[segment_event(f"s{i}", lifecycle="silent", r=1) for i in range(12)],
                *[policy_event(f"s{i}", {"sms": True}) for i in range(12)],
            ],
        )
    return client


def test_a_background_launch_answers_202_and_ends_with_the_same_counts(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = client.post("/v1/campaigns", json=CAMPAIGN, headers=ADMIN).json()["campaign_id"]
    launcher = client.app.state.runtime.launcher  # type: ignore[attr-defined]
    # hold the launch after its first chunk, so the test sees it in progress
    release = threading.Event()
    original = launcher._check_stop

    def held(chunks: int) -> None:
        original(chunks)
        release.wait(10)

    monkeypatch.setattr(launcher, "_check_stop", held)
    accepted = client.post(f"/v1/campaigns/{campaign_id}/launch?wait=false", headers=ADMIN)
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["location"] == f"/v1/campaigns/{campaign_id}/launch"
    state = wait_for(
        lambda: (
            (body := client.get(f"/v1/campaigns/{campaign_id}/launch", headers=READER).json())
            and body["targeted"] >= 4
            and body
        ),
        what="the first chunk",
    )
    assert state["in_progress"] is True and state["targeted"] < 12
    # asking again joins the running launch; a synchronous launch meanwhile is refused
    again = client.post(f"/v1/campaigns/{campaign_id}/launch?wait=false", headers=ADMIN)
    assert again.status_code == 202 and again.json()["in_progress"] is True
    assert client.post(f"/v1/campaigns/{campaign_id}/launch", headers=ADMIN).status_code == 409
    release.set()
    done = wait_for(
        lambda: (
            (body := client.get(f"/v1/campaigns/{campaign_id}/launch", headers=READER).json())
            and not body["in_progress"]
            and body
        ),
        what="the launch to finish",
    )
    held_out = sum(in_holdout(campaign_id, f"s{i}", 0.25) for i in range(12))
    assert (done["targeted"], done["holdout"], done["sent"]) == (12, held_out, 12 - held_out)
    assert done["status"] == "running"
    # the synchronous call now reports, not repeats
    report = client.post(f"/v1/campaigns/{campaign_id}/launch", headers=ADMIN).json()
    assert report["already_launched"] and report["sent"] == done["sent"]


def test_a_background_launch_checks_what_it_can_before_answering(client: TestClient) -> None:
    missing = client.post("/v1/campaigns/nope/launch?wait=false", headers=ADMIN)
    assert missing.status_code == 404
    campaign_id = client.post("/v1/campaigns", json=CAMPAIGN, headers=ADMIN).json()["campaign_id"]
    client.post(f"/v1/campaigns/{campaign_id}/status", json={"status": "cancelled"}, headers=ADMIN)
    cancelled = client.post(f"/v1/campaigns/{campaign_id}/launch?wait=false", headers=ADMIN)
    assert cancelled.status_code == 409
    assert (
        client.post(f"/v1/campaigns/{campaign_id}/launch?wait=false", headers=READER).status_code
        == 403
    )


def test_a_stopping_service_ends_a_background_launch_after_a_chunk_and_it_resumes(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = client.post("/v1/campaigns", json=CAMPAIGN, headers=ADMIN).json()["campaign_id"]
    launcher = client.app.state.runtime.launcher  # type: ignore[attr-defined]
    original = launcher._check_stop

    def stop_during_first_chunk(chunks: int) -> None:
        launcher._stopping.set()  # what runtime.stop() does while a launch runs
        original(chunks)

    monkeypatch.setattr(launcher, "_check_stop", stop_during_first_chunk)
    launcher.submit(campaign_id)
    wait_for(lambda: not launcher.in_progress(campaign_id), what="the launch to stop")
    part = client.get(f"/v1/campaigns/{campaign_id}/launch", headers=READER).json()
    assert part["targeted"] == 4  # one chunk, committed whole
    launcher._stopping.clear()
    resumed = client.post(f"/v1/campaigns/{campaign_id}/launch", headers=ADMIN).json()
    assert resumed["resumed"] and resumed["targeted"] == 12  # nobody twice, nobody missing
