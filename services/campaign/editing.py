"""Changing a campaign before it runs: PATCH while draft or scheduled (flush, never commit)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from services.campaign.deleted_segments import refuse_a_deleted_segment
from services.campaign.models import Campaign
from services.campaign.schemas import CampaignCreate, CampaignUpdate
from services.campaign.service import get_campaign
from shared.errors import Conflict
from shared.events import utcnow

EDITABLE = frozenset({"draft", "scheduled"})


def _as_create(campaign: Campaign) -> dict[str, Any]:
    return {
        "name": campaign.name,
        "purpose": campaign.purpose,
        "audience": campaign.audience,
        "channels": campaign.channels,
        "content": campaign.content,
        "schedule": campaign.schedule,
        "trigger": campaign.trigger,
        "holdout_share": campaign.holdout_share,
        "conversion_window_days": campaign.conversion_window_days,
        "reentry": {"allowed": campaign.reentry_allowed, "cooldown_days": campaign.cooldown_days},
    }


def update_campaign(session: Session, campaign_id: str, patch: CampaignUpdate) -> Campaign:
    """Apply the fields sent; 409 unless draft or scheduled; 422 if the result is not a
    valid campaign. A scheduled campaign's next run follows a changed schedule."""
    campaign = get_campaign(session, campaign_id)
    if campaign.status not in EDITABLE:
        raise Conflict(
            f"a {campaign.status} campaign cannot be changed (only draft or scheduled)",
            slug="campaign-not-editable",
            status_now=campaign.status,
        )
    sent = patch.model_dump(mode="json", by_alias=True, exclude_unset=True)
    try:
        body = CampaignCreate.model_validate({**_as_create(campaign), **sent})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    campaign.name = body.name
    campaign.purpose = body.purpose.value
    audience = (
        body.audience.model_dump(mode="json", by_alias=True, exclude_none=True)
        if body.audience
        else None
    )
    if "audience" in sent:
        refuse_a_deleted_segment(session, audience)
    campaign.audience = audience  # type: ignore[assignment]  # nullable, as create stores it
    campaign.channels = [c.value for c in body.channels]
    campaign.content = body.content.model_dump(mode="json")
    campaign.schedule = body.schedule.model_dump(mode="json", exclude_none=True)
    campaign.trigger = (
        body.trigger.model_dump(mode="json", by_alias=True, exclude_none=True)
        if body.trigger
        else None
    )
    campaign.holdout_share = body.holdout_share
    campaign.conversion_window_days = body.conversion_window_days
    campaign.reentry_allowed = body.reentry.allowed
    campaign.cooldown_days = body.reentry.cooldown_days
    now = utcnow()
    campaign.updated_at = now
    if campaign.status == "scheduled" and "schedule" in sent:
        first = campaign.schedule.get("at")
        campaign.next_run_at = datetime.fromisoformat(first) if first else now
    session.flush()
    return campaign
