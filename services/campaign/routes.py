from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from services.campaign import editing, service
from services.campaign.runtime import RuntimeDep
from services.campaign.schemas import (
    AudienceRead,
    CampaignCreate,
    CampaignRead,
    CampaignReport,
    CampaignStatus,
    CampaignUpdate,
    LaunchResult,
    StatusChange,
)
from shared.api import require
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(prefix="/v1")


@router.post(
    "/campaigns",
    status_code=status.HTTP_201_CREATED,
    response_model=CampaignRead,
    dependencies=[require("campaign:write")],
    tags=["campaigns"],
)
def create_campaign(body: CampaignCreate, runtime: RuntimeDep) -> CampaignRead:
    """Define a campaign (status draft): audience, channels, content, schedule, holdout."""
    with runtime.db.unit_of_work() as session:
        return service.to_read(service.create_campaign(session, body))


@router.get(
    "/campaigns",
    response_model=Page[CampaignRead],
    dependencies=[require("campaign:read")],
    tags=["campaigns"],
)
def list_campaigns(
    runtime: RuntimeDep,
    status_filter: Annotated[CampaignStatus | None, Query(alias="status")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[CampaignRead]:
    """List campaigns, newest first, optionally by status (cursor paginated)."""
    wanted = status_filter.value if status_filter else None
    with runtime.db.sessions() as session:
        return service.campaigns_page(session, wanted, cursor, limit)


@router.get(
    "/campaigns/{campaign_id}",
    response_model=CampaignRead,
    dependencies=[require("campaign:read")],
    tags=["campaigns"],
)
def get_campaign(campaign_id: str, runtime: RuntimeDep) -> CampaignRead:
    """One campaign with its status."""
    with runtime.db.sessions() as session:
        return service.to_read(service.get_campaign(session, campaign_id))


@router.patch(
    "/campaigns/{campaign_id}",
    response_model=CampaignRead,
    dependencies=[require("campaign:write")],
    tags=["campaigns"],
)
def update_campaign(campaign_id: str, body: CampaignUpdate, runtime: RuntimeDep) -> CampaignRead:
    """Change a draft or scheduled campaign (the fields sent, each whole); 409 otherwise."""
    with runtime.db.unit_of_work() as session:
        return service.to_read(editing.update_campaign(session, campaign_id, body))


@router.post(
    "/campaigns/{campaign_id}/status",
    response_model=CampaignRead,
    dependencies=[require("campaign:write")],
    tags=["campaigns"],
)
def change_status(campaign_id: str, body: StatusChange, runtime: RuntimeDep) -> CampaignRead:
    """Schedule, unschedule (draft), complete or cancel a campaign; 409 if not allowed."""
    with runtime.db.unit_of_work() as session:
        return service.to_read(service.change_status(session, campaign_id, body.status))


@router.post(
    "/campaigns/{campaign_id}/launch",
    response_model=LaunchResult,
    dependencies=[require("campaign:write")],
    tags=["campaigns"],
    responses={
        202: {"description": "wait=false: launching in the background", "model": LaunchResult}
    },
)
def launch_campaign(
    campaign_id: str,
    runtime: RuntimeDep,
    response: Response,
    wait: bool = Query(
        True,
        description="false: answer 202 at once and launch in the background (poll GET "
        ".../launch); for large audiences, which take about 40 s per million customers",
    ),
) -> LaunchResult:
    """Launch now (or resume an interrupted launch); idempotent: nobody gets a second message."""
    if wait:
        return runtime.launcher.launch_now(campaign_id)
    result = runtime.launcher.launch_in_background(campaign_id)
    response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Location"] = f"/v1/campaigns/{campaign_id}/launch"
    return result


@router.get(
    "/campaigns/{campaign_id}/launch",
    response_model=LaunchResult,
    dependencies=[require("campaign:read")],
    tags=["campaigns"],
)
def launch_state(campaign_id: str, runtime: RuntimeDep) -> LaunchResult:
    """What the campaign's launches did so far, and whether a background launch still runs."""
    return runtime.launcher.state(campaign_id)


@router.get(
    "/campaigns/{campaign_id}/report",
    response_model=CampaignReport,
    dependencies=[require("campaign:read")],
    tags=["campaigns"],
)
def campaign_report(campaign_id: str, runtime: RuntimeDep) -> CampaignReport:
    """Reach, receipts, and conversion of treatment vs holdout with uplift and 95% intervals."""
    with runtime.db.sessions() as session:
        return service.campaign_report(session, campaign_id)


@router.get(
    "/audience/{customer_id}",
    response_model=AudienceRead,
    dependencies=[require("campaign:read")],
    tags=["audience"],
)
def get_audience_member(customer_id: str, runtime: RuntimeDep) -> AudienceRead:
    """What campaign knows of a customer (scores, segments, tags, region, contact policy);
    of an erased one, only that: ``erased: true`` and nothing else."""
    with runtime.db.sessions() as session:
        return service.audience_member(session, customer_id)
