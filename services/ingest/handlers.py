"""The batch handler for the raw topics outside producers write to.

Each raw record is validated with exactly the rules of the REST API. A record that
fails (not UTF-8, not JSON, not an object, missing or bad fields) is counted in the
statistics and sent to ``crm.deadletter.v1`` with its origin and the reasons, through
the outbox in the same transaction: nothing is dropped silently, and the reasons
never quote the values (they may be personal data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from services.ingest import service
from services.ingest.validation import Reason, Rules
from shared import erasure_acks, topics
from shared.bus import Inbound, add_to_outbox, dead_letter_event
from shared.events import (
    ContactPolicyChangedEvent,
    ProfileErasedEvent,
    ProfileMergedEvent,
    ProfileUnmergedEvent,
    ProfileUpdatedEvent,
)
from shared.registry import Registry

log = logging.getLogger(__name__)

#: the consumer of the raw topics; also the source of the dead letters it writes, as of
#: those the consumer loop itself writes (records it cannot even decode)
RAW_CONSUMER = "ingest-raw"

RAW_KINDS = {
    topics.RAW_ORDERS: "order",
    topics.RAW_CUSTOMERS: "customer",
    topics.RAW_INTERACTIONS: "interaction",
}


def make_batch_handler(
    rules: Rules, namespace: str, group_id: str
) -> Callable[[Session, list[Inbound]], None]:
    """The consumer's batch handler: one transaction for the whole poll batch."""

    def handle(session: Session, messages: list[Inbound]) -> None:
        by_kind: dict[str, list[Inbound]] = {}
        for message in messages:
            by_kind.setdefault(RAW_KINDS[message.topic], []).append(message)
        for kind, group in by_kind.items():
            # an undecodable record arrives as its RecordRejected (see consumer.decode_raw)
            records = [m.event for m in group]
            results = service.accept(session, kind, records, source="kafka", rules=rules)
            rejected = 0
            for message, result in zip(group, results, strict=True):
                if result.status == "rejected":
                    rejected += 1
                    _dead_letter(session, message, result.reasons, namespace, group_id)
            if rejected:
                # origins and counts only: the values may hold personal data
                log.info(
                    "ingest: %d raw %s record(s) rejected to the dead-letter topic", rejected, kind
                )

    return handle


def erase_customers(session: Session, messages: list[Inbound], deps: None) -> None:
    """Customers were erased: their personal data leaves the event store too."""
    for message in messages:
        event: ProfileErasedEvent = message.event
        rewritten = service.erase_customer(session, event.data.customer_id, event.data.requested_at)
        # the rewritten versions' old pages must not stay readable in SQLite's WAL
        message.checkpoint_after_commit = True
        log.info("ingest: erasure %s rewrote %d stored versions", event.data.erasure_id, rewritten)
    erasure_acks.acknowledge(session, "ingest", messages)


#: the registry of the envelope events ingest consumes (see ``shared.registry``). The raw
#: topics carry bare objects without a type: their consumer dispatches on ``RAW_KINDS``.
HANDLERS: Registry[None] = Registry(
    {ProfileErasedEvent: erase_customers},
    # ingest stores what producers sent; merges and profile attributes do not change it
    ignores=[
        ContactPolicyChangedEvent,
        ProfileMergedEvent,
        ProfileUnmergedEvent,
        ProfileUpdatedEvent,
    ],
)


def _dead_letter(
    session: Session, message: Inbound, reasons: list[Reason], namespace: str, group_id: str
) -> None:
    event = dead_letter_event(
        message,
        source=RAW_CONSUMER,
        namespace=namespace,
        consumer_group=group_id,
        error="; ".join(f"{r.field or 'record'}: {r.message} [{r.code}]" for r in reasons),
        error_type="RecordRejected",
        attempts=1,
    )
    add_to_outbox(session, topics.DEADLETTER, event)
