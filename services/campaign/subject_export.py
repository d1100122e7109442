"""Campaign's part of a subject-access export: what it knows of the person (the audience
projection), every campaign entry (sent, held out, excluded and why), the messages it
requested and their delivery receipts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from services.campaign.export_repository import SubjectRecords
from shared.events import ensure_aware


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.endswith("_e4"):  # money stored in 1/10,000 units: give the amount
            out[key.removesuffix("_e4")] = (
                str(Decimal(value) / 10000) if value is not None else None
            )
            continue
        out[key] = ensure_aware(value).isoformat() if isinstance(value, datetime) else value
    return out


def export_section(session: Session, customer_ids: list[str]) -> dict[str, Any]:
    """``{audience, campaign_entries, messages, receipts}`` with readable field names."""
    records = SubjectRecords(session)
    entries = [_plain(e) for e in records.entries(customer_ids)]
    messages = [
        {
            "message_id": e["message_id"],
            "campaign_id": e["campaign_id"],
            "customer_id": e["customer_id"],
            "channel": e["channel"],
            "requested_at": e["entered_at"],
            "not_before": e["not_before"],
        }
        for e in entries
        if e["message_id"]
    ]
    return {
        "audience": [_plain(a) for a in records.audience(customer_ids)],
        "campaign_entries": entries,
        "messages": messages,
        "receipts": [_plain(r) for r in records.receipts(customer_ids)],
    }
