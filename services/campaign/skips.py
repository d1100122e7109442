"""Trigger occurrences a running campaign skipped, counted by reason in its report.

A triggered campaign skips an occurrence (a lifecycle move, a segment entry, a first
purchase, an overdue unpaid order) when the customer is outside its audience
(``not_in_audience``), was entered before and re-entry is off
(``reentry_not_allowed``), or was entered within the cooldown (``cooldown``), or, for a
first purchase, the order arrived more than the trigger's ``lookback_hours`` after the
purchase (``too_old``: imported history). The same
occurrence delivered again is not a new skip: rows are keyed by a hash of customer and
occurrence, so the counts hold under redelivery and keep no customer id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.campaign.repository import TriggerSkips
from shared.erasure import tombstone_key

REASONS = ("not_in_audience", "reentry_not_allowed", "cooldown", "too_old")


def skip_row(
    campaign_id: str, customer_id: str, trigger_key: str, reason: str, at: datetime
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "occurrence_hash": tombstone_key(f"{customer_id}\x1f{trigger_key}"),
        "reason": reason,
        "skipped_at": at,
    }


def record(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store skipped occurrences; one already stored stays as it is."""
    TriggerSkips(session).add_many(rows)


def counts(session: Session, campaign_id: str) -> dict[str, int]:
    """``{reason: occurrences}`` of one campaign (every reason, 0 when none)."""
    found = dict.fromkeys(REASONS, 0)
    found.update(TriggerSkips(session).counts(campaign_id))
    return found
