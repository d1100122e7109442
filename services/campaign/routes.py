from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from services.campaign import editing, service
from services.campaign.config import Settings
from services.campaign.launch import LAUNCHABLE, launch
from services.campaign.launcher import Launcher
from services.campaign.projection_repository import Erasures, Projections
from services.campaign.report import build_report
from services.campaign.repository import Campaigns
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
from shared.api import require, runtime_of
from shared.errors import Conflict, NotFound
from shared.events import ensure_aware, utcnow
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, decode_cursor, encode_cursor
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1")


@router.post(
    "/campaigns",
    status_code=status.HTTP_201_CREATED,
    response_model=CampaignRead,
    dependencies=[require("campaign:write")],
    tags=["campaigns"],
)
def create_campaign(body: CampaignCreate, request: Request) -> CampaignRead:
    """Define a campaign (status draft): audience, channels, content, schedule, holdout."""
    with runtime_of(request).db.unit_of_work() as session:
        return service.to_read(service.create_campaign(session, body))


@router.get(
    "/campaigns",
    response_model=Page[CampaignRead],
    dependencies=[require("campaign:read")],
    tags=["campaigns"],
)
def list_campaigns(
    request: Request,
    status_filter: Annotated[CampaignStatus | None, Query(alias="status")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[CampaignRead]:
    """List campaigns, newest first, optionally by status (cursor paginated)."""
    position = decode_cursor(cursor)
    after = (position["created_at"], position["id"]) if position else None
    with runtime_of(request).db.sessions() as session:
        found = Campaigns(session).page(
            status=status_filter.value if status_filter else None, after=after, limit=limit + 1
        )
    items = [service.to_read(c) for c in found[:limit]]
    next_cursor = None
    if len(found) > limit:
        last = found[limit - 1]
        next_cursor = encode_cursor(
            {"created_at": last.created_at.isoformat(), "id": last.campaign_id}
        )
    return Page[CampaignRead](items=items, next_cursor=next_cursor)


@router.get(
    "/campaigns/{campaign_id}",
    response_model=CampaignRead,
    dependencies=[require("campaign:read")],
    tags=["campaigns"],
)
def get_campaign(campaign_id: str, request: Request) -> CampaignRead:
    """One campaign with its status."""
    with runtime_of(request).db.sessions() as session:
        return service.to_read(service.get_campaign(session, campaign_id))


@router.patch(
    "/campaigns/{campaign_id}",
    response_model=CampaignRead,
    dependencies=[require("campaign:write")],
    tags=["campaigns"],
)
def update_campaign(campaign_id: str, body: CampaignUpdate, request: Request) -> CampaignRead:
    """Change a draft or scheduled campaign (the fields sent, each whole); 409 otherwise."""
    with runtime_of(request).db.unit_of_work() as session:
        return service.to_read(editing.update_campaign(session, campaign_id, body))


@router.post(
    "/campaigns/{campaign_id}/status",
    response_model=CampaignRead,
    dependencies=[require("campaign:write")],
    tags=["campaigns"],
)
def change_status(campaign_id: str, body: StatusChange, request: Request) -> CampaignRead:
    """Schedule, unschedule (draft), complete or cancel a campaign; 409 if not allowed."""
    with runtime_of(request).db.unit_of_work() as session:
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
    request: Request,
    response: Response,
    wait: bool = Query(
        True,
        description="false: answer 202 at once and launch in the background (poll GET "
        ".../launch); for large audiences, which take about 40 s per million customers",
    ),
) -> LaunchResult:
    """Launch now (or resume an interrupted launch); idempotent: nobody gets a second message."""
    runtime = runtime_of(request)
    settings = runtime.settings
    assert isinstance(settings, Settings)
    launcher: Launcher = runtime.extras["launcher"]
    if not wait:
        with runtime.db.sessions() as session:
            campaign = service.get_campaign(session, campaign_id)  # 404 if unknown
            if campaign.status not in LAUNCHABLE:
                raise Conflict(
                    f"a {campaign.status} campaign cannot be launched", status_now=campaign.status
                )
        launcher.submit(campaign_id)  # joins a launch of it already queued or running
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Location"] = f"/v1/campaigns/{campaign_id}/launch"
        return _launch_state(runtime, campaign_id)
    if launcher.in_progress(campaign_id):
        raise Conflict("a background launch of this campaign is running; poll GET .../launch")
    # the launch commits per chunk of customers (resumable), so it owns its transactions
    outcome = launch(runtime.db, campaign_id, settings)
    runtime.relay.notify()
    with runtime.db.sessions() as session:
        campaign = service.get_campaign(session, campaign_id)
        return service.launch_summary(
            session, campaign, outcome.run_no, outcome.resumed, outcome.already_launched
        )


@router.get(
    "/campaigns/{campaign_id}/launch",
    response_model=LaunchResult,
    dependencies=[require("campaign:read")],
    tags=["campaigns"],
)
def launch_state(campaign_id: str, request: Request) -> LaunchResult:
    """What the campaign's launches did so far, and whether a background launch still runs."""
    return _launch_state(runtime_of(request), campaign_id)


def _launch_state(runtime: ServiceRuntime, campaign_id: str) -> LaunchResult:
    launcher: Launcher = runtime.extras["launcher"]
    running = launcher.in_progress(campaign_id)
    with runtime.db.sessions() as session:
        campaign = service.get_campaign(session, campaign_id)
        summary = service.launch_summary(session, campaign, None, False, False)
    return summary.model_copy(update={"in_progress": running})


@router.get(
    "/campaigns/{campaign_id}/report",
    response_model=CampaignReport,
    dependencies=[require("campaign:read")],
    tags=["campaigns"],
)
def campaign_report(campaign_id: str, request: Request) -> CampaignReport:
    """Reach, receipts, and conversion of treatment vs holdout with uplift and 95% intervals."""
    with runtime_of(request).db.sessions() as session:
        campaign = service.get_campaign(session, campaign_id)
        return build_report(session, campaign, utcnow())


@router.get(
    "/audience/{customer_id}",
    response_model=AudienceRead,
    dependencies=[require("campaign:read")],
    tags=["audience"],
)
def get_audience_member(customer_id: str, request: Request) -> AudienceRead:
    """What campaign knows of a customer (scores, segments, tags, region, contact policy);
    of an erased one, only that: ``erased: true`` and nothing else."""
    with runtime_of(request).db.sessions() as session:
        member = Projections(session).audience_member(customer_id)
        if member is None:
            if Erasures(session).erased([customer_id]):
                return AudienceRead.erased_customer(customer_id)
            raise NotFound("no such customer")
        return AudienceRead(
            customer_id=member.customer_id,
            rfm_segment=member.rfm_segment,
            lifecycle_stage=member.lifecycle_stage,
            r_score=member.r_score,
            f_score=member.f_score,
            m_score=member.m_score,
            value_quadrant=member.value_quadrant,
            recency_days=member.recency_days,
            frequency=member.frequency,
            segments=member.segments or [],
            tags=member.tags or [],
            province=member.province,
            city=member.city,
            contact_policy=member.contact_policy,
            erased=False,
            scores_as_of=ensure_aware(member.scores_as_of) if member.scores_as_of else None,
        )
