"""``GET /v1/erasures``: the erasures some service has not applied yet (see
``services.profile.erasure_acks``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from services.profile import erasure_acks
from services.profile.runtime import RuntimeDep
from services.profile.schemas import PendingErasuresRead
from shared.api import require
from shared.events import utcnow
from shared.pagination import MAX_LIMIT

router = APIRouter(prefix="/v1", tags=["profiles"])

READ = [require("profile:read")]


@router.get("/erasures", response_model=PendingErasuresRead, dependencies=READ)
def pending_erasures(
    runtime: RuntimeDep,
    overdue: Annotated[
        bool, Query(description="only those pending longer than the overdue bound")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> PendingErasuresRead:
    """Erasures that a service has not applied yet, oldest first, with those services (ids
    and times only: no personal data)."""
    minutes = runtime.settings.erasure_overdue_minutes
    older_than = utcnow() - timedelta(minutes=minutes) if overdue else None
    with runtime.db.sessions() as session:
        items = erasure_acks.pending(session, limit, older_than)
    return PendingErasuresRead.model_validate({"overdue_after_minutes": minutes, "items": items})
