"""What was accepted, deduplicated and rejected, by source, kind and reason, over windows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from services.ingest.repository import IntakeStats
from shared.events import utcnow

WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


def intake_stats(
    session: Session, windows: Sequence[str], now: datetime | None = None
) -> dict[str, Any]:
    """Accepted / duplicate / rejected counts by source, kind and reason over each window."""
    now = now or utcnow()
    stats = IntakeStats(session)
    report: dict[str, Any] = {}
    for name in windows:
        since = now - WINDOWS[name]
        totals = {"accepted": 0, "duplicate": 0, "rejected": 0}
        by_source: dict[str, dict[str, Any]] = {}
        rejected_by_reason: Counter[str] = Counter()
        warnings_by_code: Counter[str] = Counter()
        for source, kind, outcome, reason, count in stats.totals_since(since):
            if outcome == "warning":
                warnings_by_code[reason] += count
                entry = by_source.setdefault(
                    source,
                    {"accepted": 0, "duplicate": 0, "rejected": 0, "by_kind": {}, "reasons": {}},
                )
                entry["reasons"][f"warning:{reason}"] = (
                    entry["reasons"].get(f"warning:{reason}", 0) + count
                )
                continue
            totals[outcome] = totals.get(outcome, 0) + count
            entry = by_source.setdefault(
                source, {"accepted": 0, "duplicate": 0, "rejected": 0, "by_kind": {}, "reasons": {}}
            )
            entry[outcome] = entry.get(outcome, 0) + count
            per_kind = entry["by_kind"].setdefault(
                kind, {"accepted": 0, "duplicate": 0, "rejected": 0}
            )
            per_kind[outcome] = per_kind.get(outcome, 0) + count
            if reason:
                key = f"{outcome}:{reason}"
                entry["reasons"][key] = entry["reasons"].get(key, 0) + count
                if outcome == "rejected":
                    rejected_by_reason[reason] += count
        report[name] = {
            "since": since,
            **totals,
            "by_source": by_source,
            "rejected_by_reason": dict(rejected_by_reason.most_common()),
            "warnings_by_code": dict(warnings_by_code.most_common()),
        }
    return report
