"""Which services applied each erasure, and which are still pending.

``DELETE /v1/customers/{id}`` erases here and records one pending row per applying
service (``shared.erasure_acks.APPLYING_SERVICES``) and per customer id of the person
(``part``); each ``erasure.applied`` that service publishes once the erasure committed
in its own database marks its row applied. A service has applied an erasure when every
part is acknowledged. ``GET /v1/erasures/{id}`` shows it per service, ``GET
/v1/erasures`` lists the erasures still pending somewhere, and :class:`ErasureWatch`
(a periodic job) sets ``crm_erasures_pending`` and ``crm_erasures_overdue`` per service
and logs once per process when an erasure stays pending past the bound
(``PROFILE_ERASURE_OVERDUE_MINUTES``). Nothing here holds a customer id or its digest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, select, update
from sqlalchemy.orm import Session

from services.profile.models import ErasureAck
from shared.business_metrics import BUSINESS, GaugeFamily
from shared.erasure_acks import APPLYING_SERVICES
from shared.events import ErasureAppliedEvent, ensure_aware

log = logging.getLogger(__name__)


def record_requested(session: Session, erasure_id: str, parts: int, at: datetime) -> list[str]:
    """An erasure of ``parts`` customer ids was published: every applying service is
    pending for each part. The services now pending."""
    session.execute(
        insert(ErasureAck),
        [
            {"erasure_id": erasure_id, "service": service, "part": part, "requested_at": at}
            for service in APPLYING_SERVICES
            for part in range(parts)
        ],
    )
    return list(APPLYING_SERVICES)


def record_applied(session: Session, events: Iterable[ErasureAppliedEvent]) -> int:
    """Mark the acknowledged parts applied (the first acknowledgement's time stays; an
    acknowledgement of an erasure this database never recorded changes nothing)."""
    marked = 0
    for event in events:
        data = event.data
        result = session.execute(
            update(ErasureAck)
            .where(
                ErasureAck.erasure_id == data.erasure_id,
                ErasureAck.service == data.service,
                ErasureAck.part == data.part,
                ErasureAck.applied_at.is_(None),
            )
            .values(applied_at=data.applied_at)
        )
        marked += result.rowcount  # type: ignore[attr-defined]
    return marked


def progress(session: Session, erasure_id: str) -> dict[str, Any] | None:
    """Per applying service: applied or pending, parts acknowledged, when (the last part);
    None for an erasure recorded before acknowledgements existed."""
    rows = session.execute(
        select(ErasureAck.service, ErasureAck.requested_at, ErasureAck.applied_at).where(
            ErasureAck.erasure_id == erasure_id
        )
    ).all()
    if not rows:
        return None
    by_service: dict[str, list[datetime | None]] = {}
    for service, _, applied_at in rows:
        by_service.setdefault(service, []).append(applied_at)
    services = []
    for service in sorted(by_service):
        times = by_service[service]
        done = [ensure_aware(t) for t in times if t is not None]
        applied = len(done) == len(times)
        services.append(
            {
                "service": service,
                "status": "applied" if applied else "pending",
                "parts_applied": len(done),
                "parts": len(times),
                "applied_at": max(done) if applied else None,
            }
        )
    return {
        "requested_at": ensure_aware(rows[0][1]),
        "services": services,
        "pending_services": [s["service"] for s in services if s["status"] == "pending"],
    }


def pending(
    session: Session, limit: int, older_than: datetime | None = None
) -> list[dict[str, Any]]:
    """Erasures some service has not applied yet, oldest first (requested before
    ``older_than`` when given)."""
    conditions: list[ColumnElement[bool]] = [ErasureAck.applied_at.is_(None)]
    if older_than is not None:
        conditions.append(ErasureAck.requested_at <= older_than)
    oldest = (
        select(ErasureAck.erasure_id, func.min(ErasureAck.requested_at).label("requested_at"))
        .where(and_(*conditions))
        .group_by(ErasureAck.erasure_id)
        .order_by(func.min(ErasureAck.requested_at), ErasureAck.erasure_id)
        .limit(limit)
    )
    found = session.execute(oldest).all()
    ids = [row.erasure_id for row in found]
    services: dict[str, set[str]] = {}
    if ids:
        for erasure_id, service in session.execute(
            select(ErasureAck.erasure_id, ErasureAck.service)
            .where(ErasureAck.erasure_id.in_(ids), ErasureAck.applied_at.is_(None))
            .distinct()
        ):
            services.setdefault(erasure_id, set()).add(service)
    return [
        {
            "erasure_id": row.erasure_id,
            "requested_at": ensure_aware(row.requested_at),
            "pending_services": sorted(services.get(row.erasure_id, ())),
        }
        for row in found
    ]


def pending_pairs(session: Session) -> list[tuple[str, str, datetime]]:
    """``(erasure id, service, requested at)`` of every erasure a service has not applied."""
    rows = session.execute(
        select(ErasureAck.erasure_id, ErasureAck.service, func.min(ErasureAck.requested_at))
        .where(ErasureAck.applied_at.is_(None))
        .group_by(ErasureAck.erasure_id, ErasureAck.service)
    ).all()
    return [(e, s, ensure_aware(at)) for e, s, at in rows]


class ErasureWatch:
    """The erasure gauges, and one log line per erasure and service when it crosses the
    bound (again after a restart, while it stays pending)."""

    def __init__(self, overdue_after: timedelta) -> None:
        self.overdue_after = overdue_after
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def check(self, session: Session, now: datetime) -> dict[str, int]:
        """Refresh the gauges; the overdue count per applying service."""
        cutoff = now - self.overdue_after
        pairs = pending_pairs(session)
        waiting = dict.fromkeys(APPLYING_SERVICES, 0)
        overdue = dict.fromkeys(APPLYING_SERVICES, 0)
        late: set[tuple[str, str]] = set()
        for erasure_id, service, requested_at in pairs:
            waiting[service] = waiting.get(service, 0) + 1
            if requested_at <= cutoff:
                overdue[service] = overdue.get(service, 0) + 1
                late.add((erasure_id, service))
        with self._lock:
            for erasure_id, service in sorted(late - self._logged):
                log.warning(
                    "profile: erasure %s not yet applied by %s after %g min "
                    "(see GET /v1/erasures/%s)",
                    erasure_id,
                    service,
                    self.overdue_after.total_seconds() / 60,
                    erasure_id,
                )
            self._logged = late
        BUSINESS.publish(
            [
                GaugeFamily(
                    "crm_erasures_pending",
                    "Erasures a service has not acknowledged yet",
                    ("service",),
                    tuple(((s,), float(n)) for s, n in sorted(waiting.items())),
                ),
                GaugeFamily(
                    "crm_erasures_overdue",
                    "Erasures a service has not acknowledged within the bound "
                    "(PROFILE_ERASURE_OVERDUE_MINUTES)",
                    ("service",),
                    tuple(((s,), float(n)) for s, n in sorted(overdue.items())),
                ),
            ]
        )
        return overdue
