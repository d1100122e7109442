"""The handlers of what ingest consumes: the raw topics outside producers write to, and
profile's erasures.

Each raw record is validated with exactly the rules of the REST API. A record that
fails (not UTF-8, not JSON, not an object, missing or bad fields) is counted in the
statistics and sent to ``crm.deadletter.v1`` with its origin and the reasons, through
the outbox in the same transaction: nothing is dropped silently, and the reasons
never quote the values (they may be personal data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from services.ingest import erasure, service
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
from shared.registry import Registry, TopicRegistry

log = logging.getLogger(__name__)

#: the consumer of the raw topics; also the source of the dead letters it writes, as of
#: those the consumer loop itself writes (records it cannot even decode)
RAW_CONSUMER = "ingest-raw"

#: each raw topic and the kind of record it carries (validated as the REST API validates
#: that kind): a raw topic is added here, and the raw consumer's topics and dispatch
#: (``RAW_HANDLERS``) follow
RAW_KINDS = {
    topics.RAW_ORDERS: "order",
    topics.RAW_CUSTOMERS: "customer",
    topics.RAW_INTERACTIONS: "interaction",
}


@dataclass(frozen=True)
class RawIntake:
    """What the raw topics' handler needs: the API's validation rules, and the namespace
    and group its dead letters name."""

    rules: Rules
    namespace: str
    group_id: str


def accept_raw(session: Session, messages: list[Inbound], deps: RawIntake) -> None:
    """Raw records of one topic, stored as its kind; each rejected one is dead-lettered
    with its reasons (an undecodable record arrives as its RecordRejected, see
    ``consumer.decode_raw``)."""
    kind = RAW_KINDS[messages[0].topic]
    records = [m.event for m in messages]
    results = service.accept(session, kind, records, source="kafka", rules=deps.rules)
    rejected = 0
    for message, result in zip(messages, results, strict=True):
        if result.status == "rejected":
            rejected += 1
            _dead_letter(session, message, result.reasons, deps.namespace, deps.group_id)
    if rejected:
        # origins and counts only: the values may hold personal data
        log.info("ingest: %d raw %s record(s) rejected to the dead-letter topic", rejected, kind)


#: the raw topics carry bare objects without a type: dispatched on their topic, one run
#: per topic and poll batch (one transaction for the whole batch)
RAW_HANDLERS: TopicRegistry[RawIntake] = TopicRegistry(dict.fromkeys(RAW_KINDS, accept_raw))


def erase_customers(session: Session, messages: list[Inbound], deps: None) -> None:
    """Customers were erased: their personal data leaves the event store too."""
    for message in messages:
        event: ProfileErasedEvent = message.event
        rewritten = erasure.erase_customer(session, event.data.customer_id, event.data.requested_at)
        # the rewritten versions' old pages must not stay readable in SQLite's WAL
        message.checkpoint_after_commit = True
        log.info("ingest: erasure %s rewrote %d stored versions", event.data.erasure_id, rewritten)
    erasure_acks.acknowledge(session, "ingest", messages)


#: the registry of the envelope events ingest consumes (see ``shared.registry``); the raw
#: topics have ``RAW_HANDLERS``.
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
