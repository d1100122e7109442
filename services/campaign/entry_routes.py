"""Who a campaign treated, held out or excluded: thin routes over the service (a page) and
entries.py (the CSV)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from services.campaign import entries, service
from services.campaign.runtime import RuntimeDep
from services.campaign.schemas import EntryOutcome, EntryRead
from shared.api import require
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(prefix="/v1", tags=["campaigns"])

Outcome = Annotated[EntryOutcome | None, Query(description="sent, holdout or excluded")]
Reason = Annotated[str | None, Query(description="only entries excluded for this reason")]


@router.get(
    "/campaigns/{campaign_id}/entries",
    response_model=Page[EntryRead],
    dependencies=[require("campaign:read")],
)
def list_entries(
    campaign_id: str,
    runtime: RuntimeDep,
    outcome: Outcome = None,
    reason: Reason = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[EntryRead]:
    """Every entry of the campaign (sent, held out, excluded with its reason), cursor paged."""
    with runtime.db.sessions() as session:
        return service.entries_page(
            session,
            campaign_id,
            outcome=outcome.value if outcome else None,
            reason=reason,
            cursor=cursor,
            limit=limit,
        )


@router.get(
    "/campaigns/{campaign_id}/entries.csv",
    response_class=StreamingResponse,
    dependencies=[require("campaign:read")],
    responses={200: {"content": {"text/csv": {}}, "description": "the entries as CSV"}},
)
def download_entries(
    campaign_id: str, runtime: RuntimeDep, outcome: Outcome = None, reason: Reason = None
) -> StreamingResponse:
    """The same entries as CSV (header row: the fields of an entry), streamed."""
    with runtime.db.sessions() as session:
        service.get_campaign(session, campaign_id)
    return StreamingResponse(
        entries.entries_csv(
            runtime.db.sessions,
            campaign_id,
            outcome=outcome.value if outcome else None,
            reason=reason,
        ),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{campaign_id}-entries.csv"'},
    )
