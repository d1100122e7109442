"""Erasure: a customer's personal data removed, tombstones kept, ``profile.erased``
published. Flush, never commit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from services.profile import erasure_acks
from services.profile.documents import SOURCE
from services.profile.domain import iso
from services.profile.export_repository import SubjectExports
from services.profile.reads import load
from services.profile.repository import ProfileRepository
from services.profile.unmerge_repository import MergeRecords, MergeSnapshots
from shared import topics
from shared.bus import add_to_outbox
from shared.db import secure_deletion
from shared.erasure import tombstone_key
from shared.events import ProfileErasedEvent, ProfileErasedPayload, utcnow


def erase(session: Session, customer_id: str, actor: str) -> dict[str, Any]:
    """Remove a customer's personal data here, keep a tombstone per customer id (digest
    only), scrub the audit trail down to the fact, and publish ``profile.erased``."""
    row = load(session, customer_id)
    repo = ProfileRepository(session)
    aliases = sorted(set(repo.aliases_of(row.profile_id)) | {row.profile_id})
    now = utcnow()
    erasure_id = str(uuid.uuid4())
    with secure_deletion(session):  # every byte zeroed, large rows' overflow pages too
        repo.drop_pending_events(aliases)
        repo.delete_contact_points(aliases)
        repo.delete_history(row.profile_id)
        repo.delete_profiles([row.profile_id])
        SubjectExports(session).delete_of(row.profile_id)
        MergeSnapshots(session).drop_of(aliases)
        subject = f"erased:{erasure_id}"
        repo.scrub_audit(aliases, subject)
        MergeRecords(session).scrub(row.profile_id, subject)
    repo.add_tombstones(
        [
            {"customer_hash": tombstone_key(cid), "erasure_id": erasure_id, "erased_at": now}
            for cid in aliases
        ]
    )
    repo.audit(
        at=now,
        actor=actor,
        action="erase",
        subject=subject,
        detail={"erasure_id": erasure_id, "customer_ids": len(aliases)},
    )
    for part, cid in enumerate(aliases):
        add_to_outbox(
            session,
            topics.PROFILES,
            ProfileErasedEvent(
                source=SOURCE,
                key=cid,
                data=ProfileErasedPayload(
                    customer_id=cid,
                    erasure_id=erasure_id,
                    requested_at=now,
                    part=part,
                    parts=len(aliases),
                ),
            ),
        )
    pending = erasure_acks.record_requested(session, erasure_id, len(aliases), now)
    return {
        "erasure_id": erasure_id,
        "erased_at": iso(now),
        "customer_ids": len(aliases),
        "pending_services": pending,
    }


def erasure_audit(session: Session, erasure_id: str) -> list[dict[str, Any]]:
    return ProfileRepository(session).audit_of([f"erased:{erasure_id}"])
