"""Subject-access exports across the four services: thin routes over subject_exports.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from services.profile import subject_exports
from services.profile.runtime import RuntimeDep
from services.profile.schemas import SubjectExportRead
from shared.api import Caller, require

router = APIRouter(prefix="/v1", tags=["export and erasure"])

PII_READ = [require("profile:read", "pii:read")]


@router.post(
    "/customers/{customer_id}/exports",
    response_model=SubjectExportRead,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=PII_READ,
)
def request_export(customer_id: str, runtime: RuntimeDep, principal: Caller) -> dict[str, Any]:
    """Start a complete export (all four services); follow it at GET /v1/exports/{id}."""
    with runtime.db.unit_of_work() as session:
        found = subject_exports.request_export(
            session, customer_id, principal.key_id, runtime.settings
        )
    runtime.relay.notify()
    return found


@router.get("/exports/{export_id}", response_model=SubjectExportRead, dependencies=PII_READ)
def get_export(export_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """An export's progress per service and the document assembled so far."""
    with runtime.db.sessions() as session:
        return subject_exports.get_export(session, export_id)
