"""The periodic job: scheduled and recurring launches, unpaid-order triggers, completion."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from services.campaign import service
from services.campaign.config import Settings
from services.campaign.launch import launch
from services.campaign.repository import Campaigns
from shared.db import Database
from shared.events import utcnow

log = logging.getLogger(__name__)


def tick(
    db: Database,
    settings: Settings,
    notify: Callable[[], None] = lambda: None,
    now: Callable[[], datetime] = utcnow,
) -> dict[str, int]:
    """One pass; each step commits on its own so one failure does not block the others."""
    done = {"launched": 0, "triggered": 0, "completed": 0}
    with db.unit_of_work() as session:
        due = [c.campaign_id for c in Campaigns(session).due(now())]
    for campaign_id in due:
        try:
            launch(db, campaign_id, settings, now=now, new_run=True)
            with db.unit_of_work() as session:
                campaign = Campaigns(session).get(campaign_id)
                if campaign is not None:
                    service.advance_schedule(campaign, now())
            done["launched"] += 1
        except Exception:
            log.exception("scheduled launch of %s failed; retried next tick", campaign_id)
        notify()
    with db.unit_of_work() as session:
        done["triggered"] = service.fire_unpaid_order_triggers(session, settings, now())
    notify()
    with db.unit_of_work() as session:
        done["completed"] = len(service.complete_finished(session, now()))
    return done
