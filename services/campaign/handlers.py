"""Handlers for the topics campaign consumes: one batch per poll, in topic order."""

from __future__ import annotations

from itertools import groupby

from sqlalchemy.orm import Session

from services.campaign import deleted_segments, projection, service, unmerges
from services.campaign.config import Settings
from services.campaign.repository import Campaigns
from shared.bus import BatchHandler, Inbound

AUDIENCE_TYPES = frozenset(
    {
        "segment.changed",
        "profile.contact_policy_changed",
        "profile.erased",
        "profile.merged",
        "profile.updated",
    }
)
ORDER_TYPES = frozenset({"order.recorded"})
RECEIPT_TYPES = frozenset({"campaign.receipt_recorded"})
SEGMENT_TYPES = frozenset({"segment.deleted"})
UNMERGE_TYPES = frozenset({"profile.unmerged"})


def _kind(message: Inbound) -> str:
    if message.event_type in AUDIENCE_TYPES:
        return "audience"
    if message.event_type in ORDER_TYPES:
        return "orders"
    if message.event_type in RECEIPT_TYPES:
        return "receipts"
    if message.event_type in SEGMENT_TYPES:
        return "segments"
    if message.event_type in UNMERGE_TYPES:
        return "unmerges"
    return "ignored"  # other types on these topics: forward compatibility


def make_batch_handler(settings: Settings) -> BatchHandler:
    """Apply a poll batch to the projections, then fire the triggers it caused."""

    def handle(session: Session, messages: list[Inbound]) -> None:
        transitions: list[projection.Transition] = []
        campaigns = Campaigns(session).armed_triggered()
        armed = {(c.trigger or {}).get("type") for c in campaigns}
        # consecutive runs of one kind keep each customer's events in order
        for kind, group in groupby(messages, key=_kind):
            batch = list(group)
            events = [m.event for m in batch]
            if kind == "audience":
                for message in batch:
                    if message.event_type == "profile.erased":
                        # the deleted and re-keyed rows must not stay readable in SQLite's WAL
                        message.checkpoint_after_commit = True
                transitions += projection.apply_audience_events(session, events)
            elif kind == "orders":
                transitions += projection.apply_orders(
                    session, events, detect_first_purchase="first_purchase" in armed
                )
            elif kind == "receipts":
                projection.apply_receipts(session, events)
            elif kind == "segments":
                deleted_segments.record_deletions(session, events)
            elif kind == "unmerges":
                unmerges.apply_unmerges(session, events)
        if campaigns:
            service.fire_triggers(session, transitions, settings, campaigns)

    return handle
