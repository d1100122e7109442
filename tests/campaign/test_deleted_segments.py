"""segment.deleted: campaigns aimed at the segment are told and refuse to launch."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.campaign import service
from services.campaign.editing import update_campaign
from services.campaign.launch import launch
from services.campaign.repository import Campaigns
from services.campaign.schemas import CampaignUpdate
from shared.db import Database
from shared.errors import Conflict
from shared.events import SegmentDeletedEvent, SegmentDeletedPayload, utcnow
from tests.campaign.factories import consume, make_campaign, policy_event, segment_event, settings


def deleted(segment_id: str = "s1") -> SegmentDeletedEvent:
    return SegmentDeletedEvent(
        source="segment",
        key=segment_id,
        data=SegmentDeletedPayload(segment_id=segment_id, name="VIP", deleted_at=utcnow()),
    )


def status_of(db: Database, campaign_id: str) -> tuple[str, object]:
    with db.sessions() as session:
        campaign = Campaigns(session).get(campaign_id)
        assert campaign is not None
        return campaign.status, campaign.next_run_at


def test_a_campaign_aimed_at_a_deleted_segment_refuses_to_launch(db: Database) -> None:
    consume(db, [segment_event("c1", segments=["s1"]), policy_event("c1", {"sms": True})])
    draft = make_campaign(db)
    scheduled = make_campaign(db)
    other = make_campaign(db, audience={"segment_id": "s2"})
    with db.unit_of_work() as session:
        service.change_status(session, scheduled, "scheduled")
    assert status_of(db, scheduled)[1] is not None

    consume(db, [deleted("s1")])
    consume(db, [deleted("s1")])  # delivered twice: the same
    assert status_of(db, scheduled) == ("draft", None)  # unscheduled: the scheduler skips it
    for campaign_id in (draft, scheduled):
        with pytest.raises(Conflict) as refused:
            launch(db, campaign_id, settings())
        assert refused.value.slug == "segment-deleted"
        assert status_of(db, campaign_id)[0] == "draft"
    # a campaign aimed at another segment launches as before
    assert launch(db, other, settings()).status == "running"


def test_no_campaign_is_created_aimed_scheduled_or_patched_onto_a_deleted_segment(
    db: Database,
) -> None:
    draft = make_campaign(db)  # aimed at s1 while it exists
    elsewhere = make_campaign(db, audience={"segment_id": "s2"})
    consume(db, [deleted("s1")])

    def refused(action: Callable[[], object]) -> None:
        with pytest.raises(Conflict) as caught:
            action()
        assert caught.value.slug == "segment-deleted"

    refused(lambda: make_campaign(db))  # create
    with db.unit_of_work() as session:  # schedule
        refused(lambda: service.change_status(session, draft, "scheduled"))
    with db.unit_of_work() as session:  # PATCH onto it
        patch = CampaignUpdate.model_validate({"audience": {"segment_id": "s1"}})
        refused(lambda: update_campaign(session, elsewhere, patch))
    assert status_of(db, draft)[0] == "draft"
    with db.sessions() as session:
        aimed = Campaigns(session).get(elsewhere)
        assert aimed is not None and aimed.audience == {"segment_id": "s2"}
    # aimed elsewhere, the draft can be scheduled again
    with db.unit_of_work() as session:
        update_campaign(
            session, draft, CampaignUpdate.model_validate({"audience": {"segment_id": "s2"}})
        )
        assert service.change_status(session, draft, "scheduled").status == "scheduled"
