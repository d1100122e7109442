"""Erasure acknowledgements: each consuming service tells profile it applied an erasure.

Profile publishes one ``profile.erased`` per customer id of the person (``part`` of
``parts``). Ingest, segment and campaign each apply it in their own database and, in
the same transaction, queue ``erasure.applied`` (the erasure id, the part and the
service's name; never the customer id nor its digest) on ``crm.erasures.applied.v1``
through their outbox: the acknowledgement goes out if and only if the erasure
committed, and a redelivered ``profile.erased`` at most acknowledges again (profile
keeps one row per erasure, service and part, so a repeat is harmless). Profile shows
per erasure which services applied it and which are still pending (see
``services/profile/erasure_acks.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from shared import manifest, topics
from shared.consumer_loop import Inbound
from shared.events import (
    ErasureAppliedEvent,
    ErasureAppliedPayload,
    ProfileErasedEvent,
    utcnow,
)
from shared.outbox import add_to_outbox

#: the services that apply an erasure and acknowledge it (profile erases first, itself):
#: those whose manifest entry writes ``crm.erasures.applied.v1``
APPLYING_SERVICES = manifest.ERASURE_APPLIERS


def acknowledge(session: Session, service: str, messages: Iterable[Inbound]) -> int:
    """Queue ``erasure.applied`` for each ``profile.erased`` among ``messages``, in the
    caller's transaction (the one that applied them); how many were queued."""
    queued = 0
    for message in messages:
        event = message.event
        if not isinstance(event, ProfileErasedEvent):
            continue
        data = event.data
        ack = ErasureAppliedEvent(
            source=service,
            key=data.erasure_id,
            data=ErasureAppliedPayload(
                erasure_id=data.erasure_id,
                part=data.part,
                parts=data.parts,
                service=service,
                applied_at=utcnow(),
            ),
        )
        add_to_outbox(session, topics.ERASURES_APPLIED, ack)
        queued += 1
    return queued
