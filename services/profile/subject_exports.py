"""Subject-access exports across the four services (use cases; flush, never commit).

Profile writes its own section at once and asks the others through
``crm.exports.requests.v1``; their parts arrive on ``crm.exports.parts.v1``
(``shared.exports``) and complete the document.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from services.profile import reads
from services.profile.config import Settings
from services.profile.export_repository import SubjectExports
from services.profile.repository import ProfileRepository
from shared import topics
from shared.bus import add_to_outbox
from shared.errors import NotFound
from shared.events import ensure_aware, utcnow
from shared.exports import (
    ANSWERING_SERVICES,
    ExportPartRecordedEvent,
    ExportRequest,
    ExportRequestedEvent,
)


def request_export(
    session: Session, customer_id: str, actor: str, settings: Settings
) -> dict[str, Any]:
    """Start an export of everything held on the person behind ``customer_id`` (all ids
    merged into their profile); audited."""
    own = reads.export(session, customer_id, settings)
    profile_id = own["profile"]["customer_id"]
    customer_ids = sorted({profile_id, *own["customer_ids"]})
    export_id = str(uuid.uuid4())
    now = utcnow()
    SubjectExports(session).add(
        export_id=export_id,
        profile_id=profile_id,
        customer_ids=customer_ids,
        requested_at=now,
        requested_by=actor,
        sections={"profile": own},
    )
    ProfileRepository(session).audit(
        at=now,
        actor=actor,
        action="export.requested",
        subject=profile_id,
        detail={"export_id": export_id},
    )
    add_to_outbox(
        session,
        topics.EXPORT_REQUESTS,
        ExportRequestedEvent(
            source="profile",
            key=export_id,
            data=ExportRequest(export_id=export_id, customer_ids=customer_ids, requested_at=now),
        ),
    )
    session.flush()
    found = SubjectExports(session).get(export_id)
    assert found is not None
    return export_view(found)


def record_part(session: Session, event: ExportPartRecordedEvent) -> None:
    """A service's part arrived (again, or late: the newest answer of a service wins; an
    export that no longer exists, e.g. erased meanwhile, takes nothing)."""
    exports = SubjectExports(session)
    found = exports.get(event.data.export_id, for_update=True)
    if found is None or event.data.service not in ANSWERING_SERVICES:
        return
    sections = found["sections"]
    sections[event.data.service] = event.data.section
    done = all(name in sections for name in ANSWERING_SERVICES)
    completed_at = found["completed_at"] or (utcnow() if done else None)
    exports.save_sections(event.data.export_id, sections, completed_at)


def get_export(session: Session, export_id: str) -> dict[str, Any]:
    found = SubjectExports(session).get(export_id)
    if found is None:
        raise NotFound(f"no export {export_id}")
    return export_view(found)


def export_view(found: dict[str, Any]) -> dict[str, Any]:
    sections = found["sections"]
    services = {"profile": "done"} | {
        name: "done" if name in sections else "pending" for name in ANSWERING_SERVICES
    }
    completed_at = found["completed_at"]
    return {
        "export_id": found["export_id"],
        "customer_id": found["profile_id"],
        "customer_ids": found["customer_ids"],
        "status": "complete" if completed_at else "collecting",
        "requested_at": ensure_aware(found["requested_at"]),
        "completed_at": ensure_aware(completed_at) if completed_at else None,
        "services": services,
        "document": {
            name: sections[name] for name in ("profile", *ANSWERING_SERVICES) if name in sections
        },
    }
