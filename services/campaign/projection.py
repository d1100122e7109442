"""The local projections campaign keeps from other services' topics (flush, never commit).

Each ``apply_*`` takes a batch of events of one topic in topic order, updates the
projection, and returns the transitions that may enter customers into triggered
campaigns. Every apply is idempotent for a repeated event (same state written again)
and ignores a stale one (an older score snapshot, policy or order version).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.campaign import merges
from services.campaign.models import AudienceMember, CustomerOrder
from services.campaign.projection_repository import AUDIENCE_FIELDS, Aliases, Erasures, Projections
from services.campaign.rules import to_e4
from shared.bus import Inbound, drop_from_outbox
from shared.erasure import tombstone_key
from shared.events import (
    STATUS_RANK,
    MessageReceiptRecordedEvent,
    OrderRecordedEvent,
    ensure_aware,
    utcnow,
)
from shared.registry import BatchKind


@dataclass(frozen=True)
class Transition:
    """Something that happened to a customer that a trigger may react to."""

    kind: str  # lifecycle | segment_entered | first_purchase
    customer_id: str
    from_value: str | None = None
    to_value: str | None = None
    key: str | None = None  # identifies the occurrence (order id, segment id + as_of)
    # first_purchase: the purchase's time and when ingest recorded it (the event's
    # occurred_at), for the trigger's lookback (an imported old purchase is not a welcome)
    purchased_at: datetime | None = None
    arrived_at: datetime | None = None


def _new_member(customer_id: str, now: datetime) -> dict[str, Any]:
    """A new customer's audience row (what the ORM model's defaults give)."""
    row: dict[str, Any] = dict.fromkeys(AUDIENCE_FIELDS)
    row.update(customer_id=customer_id, segments=[], tags=[], updated_at=now)
    return row


def _older(new: datetime | None, old: datetime | None) -> bool:
    return new is not None and old is not None and ensure_aware(new) < ensure_aware(old)


class AudienceRun:
    """One run of segment.changed and profile.* events onto the audience projection.

    The rows are read through Core and written at the driver, as plain dicts: each touched
    row once per run (loaded in :meth:`load` from the ids every step noted), one
    executemany for the new ones, one for the changed ones, one delete (:meth:`finish`).
    """

    def __init__(self, session: Session) -> None:
        session.flush()  # pending ORM rows of earlier runs first: the Core reads below see them
        self.session = session
        self.repo = Projections(session)
        self.ids: list[str] = []
        self.stored: dict[str, dict[str, Any]] = {}
        # the current row of each customer the run touched (None: removed)
        self.rows: dict[str, dict[str, Any] | None] = {}
        self.touched: set[str] = set()
        self.aliases: dict[str, str] = {}
        self.erasures = Erasures(session)
        self.erased: set[str] = set()
        self.tombstones: dict[str, dict[str, Any]] = {}
        self.transitions: list[Transition] = []
        self.now = utcnow()

    def load(self) -> None:
        self.stored = self.repo.audience_records(self.ids)
        self.rows = dict(self.stored)
        self.aliases = Aliases(self.session).survivors(self.ids)
        # an erased customer keeps no audience row: nothing published about them, replayed
        # or late, brings one back (a customer erased in this run joins the set)
        self.erased = set(self.erasures.erased(self.ids))

    def member(self, customer_id: str) -> dict[str, Any]:
        row = self.rows.get(customer_id)
        if row is None:
            # a customer removed and seen again in the same run: a new customer's row
            row = self.rows[customer_id] = _new_member(customer_id, self.now)
        self.touched.add(customer_id)
        return row

    def drop(self, customer_id: str) -> None:
        self.rows[customer_id] = None
        self.touched.add(customer_id)

    def current(self, customer_id: str) -> bool:
        """Whether what is published about this id is still the customer's truth."""
        # a merged id's state lives with its survivor; what is still published under the
        # old id (sent before the merge, delivered after it) is not
        return customer_id not in self.erased and customer_id not in self.aliases

    def finish(self) -> list[Transition]:
        repo, stored = self.repo, self.stored
        final = {c: self.rows.get(c) for c in self.touched}
        removed = {c for c, r in final.items() if r is None and c in stored}
        repo.write_audience(
            new=[r for c, r in final.items() if r is not None and c not in stored],
            changed=[r for c, r in final.items() if r is not None and c in stored],
            removed=sorted(removed),
        )
        repo.forget(AudienceMember, self.touched - removed)
        repo.forget(AudienceMember, removed, deleted=True)
        if self.tombstones:
            self.erasures.add(list(self.tombstones.values()))
            self.erasures.pseudonymise(list(self.tombstones))
            # a message request not yet relayed must not reach the erased customer
            drop_from_outbox(self.session, list(self.tombstones))
        return self.transitions


def _start_audience(session: Session, messages: list[Inbound], deps: Any) -> AudienceRun:
    return AudienceRun(session)


#: consecutive audience events are one run, in order (each type's step is registered in
#: ``handlers.HANDLERS``); the run returns the transitions it caused
AUDIENCE: BatchKind[Any, AudienceRun] = BatchKind(
    _start_audience, AudienceRun.finish, prepare=AudienceRun.load
)


def note_customer(run: AudienceRun, message: Inbound) -> None:
    run.ids.append(message.event.data.customer_id)


def note_merge(run: AudienceRun, message: Inbound) -> None:
    merge = message.event.data
    run.ids.extend([merge.survivor_id, *merge.merged_ids])


def apply_merge(run: AudienceRun, message: Inbound) -> None:
    _, merged = merges.apply_merge(run.session, message.event.data, run.aliases)
    for merged_id in merged:
        run.drop(merged_id)


def apply_erasure(run: AudienceRun, message: Inbound) -> None:
    # a merged id too: its own tombstone stops its late orders once its alias is gone
    erasure = message.event.data
    run.drop(erasure.customer_id)
    run.erased.add(erasure.customer_id)
    run.tombstones.setdefault(
        erasure.customer_id,
        {
            "customer_hash": tombstone_key(erasure.customer_id),
            "erasure_id": erasure.erasure_id,
            "erased_at": erasure.requested_at,
        },
    )
    # the deleted and re-keyed rows must not stay readable in SQLite's WAL
    message.checkpoint_after_commit = True


def apply_segment_change(run: AudienceRun, message: Inbound) -> None:
    data = message.event.data
    if not run.current(data.customer_id):
        return
    if data.removed:
        run.drop(data.customer_id)
        return
    row = run.member(data.customer_id)
    if _older(data.as_of, row["scores_as_of"]):
        return
    _set_scores(row, data.current, data.as_of)
    row["segments"] = sorted(data.segments)
    row["updated_at"] = run.now
    before = data.previous.lifecycle_stage if data.previous else None
    after = data.current.lifecycle_stage if data.current else None
    if before != after:
        run.transitions.append(
            Transition("lifecycle", data.customer_id, before, after, f"{after}@{data.as_of}")
        )
    for segment_id in data.segments_entered:
        run.transitions.append(
            Transition(
                "segment_entered",
                data.customer_id,
                None,
                segment_id,
                f"{segment_id}@{data.as_of}",
            )
        )


def apply_contact_policy(run: AudienceRun, message: Inbound) -> None:
    policy = message.event.data
    if not run.current(policy.customer_id):
        return
    row = run.member(policy.customer_id)
    if _older(policy.updated_at, row["policy_updated_at"]):
        return
    row["contact_policy"] = policy.model_dump(mode="json")
    row["policy_updated_at"] = policy.updated_at or message.event.occurred_at
    row["updated_at"] = run.now


def apply_profile_update(run: AudienceRun, message: Inbound) -> None:
    profile = message.event.data
    if not run.current(profile.customer_id):
        return
    row = run.member(profile.customer_id)
    row["tags"] = sorted(set(profile.tags))
    row["province"], row["city"] = profile.province, profile.city
    row["timezone"] = profile.timezone
    row["updated_at"] = run.now


def apply_audience_events(session: Session, events: Sequence[Any]) -> list[Transition]:
    """segment.changed and profile.* events, in order, onto the audience projection,
    through the consumer's registry (``handlers.HANDLERS``): its transitions."""
    from services.campaign.handlers import HANDLERS, PollBatch  # it registers these steps

    messages = [
        Inbound("", 0, i, e.key, b"", e.type, str(e.event_id), e) for i, e in enumerate(events)
    ]
    batch = PollBatch(None, frozenset())  # type: ignore[arg-type]  # the audience reads neither
    return [t for found in HANDLERS.dispatch(session, messages, batch) for t in found]


def _set_scores(row: dict[str, Any], snapshot: Any, as_of: datetime | None) -> None:
    row["scores_as_of"] = as_of
    row["rfm_segment"] = snapshot.rfm_segment if snapshot else None
    row["lifecycle_stage"] = snapshot.lifecycle_stage if snapshot else None
    row["r_score"] = snapshot.r_score if snapshot else None
    row["f_score"] = snapshot.f_score if snapshot else None
    row["m_score"] = snapshot.m_score if snapshot else None
    row["value_quadrant"] = snapshot.value_quadrant if snapshot else None
    row["recency_days"] = snapshot.recency_days if snapshot else None
    row["frequency"] = snapshot.frequency if snapshot else None
    row["monetary_e4"] = to_e4(snapshot.monetary) if snapshot else None
    row["currency"] = snapshot.currency if snapshot else None
    row["first_order_at"] = snapshot.first_order_at if snapshot else None
    row["last_order_at"] = snapshot.last_order_at if snapshot else None


def apply_orders(
    session: Session, events: Sequence[OrderRecordedEvent], *, detect_first_purchase: bool = True
) -> list[Transition]:
    """order.recorded events onto the orders projection (the newest version of an order wins).

    ``detect_first_purchase`` (a query per newly valid order) only when a trigger needs it.
    Rows are read through Core and written at the driver, one statement per kind of write
    per batch (the ORM's per-row unit of work was most of this consumer's CPU per order).
    """
    session.flush()  # pending ORM rows of earlier runs first: the Core reads below see them
    repo = Projections(session)
    stored = repo.order_versions([e.data.order_id for e in events])
    # an order of a merged id counts for its survivor (and an order the merge moved stays)
    owners = Aliases(session).survivors([e.data.customer_id for e in events])
    # an erased customer's order still counts in the reports, kept under their digest
    erased = Erasures(session).erased(
        [owners.get(e.data.customer_id, e.data.customer_id) for e in events]
    )
    # per order, its newest version in this batch (stored or not) and the row to write
    versions: dict[str, tuple[datetime, int, bool]] = dict(stored)
    rows: dict[str, dict[str, Any]] = {}
    # per customer, the orders this batch made valid purchases (paid_at, order id)
    became_valid: dict[str, dict[str, datetime]] = {}
    arrivals: dict[str, datetime] = {}  # order id: when ingest recorded that version
    for event in events:
        order = event.data
        customer_id = owners.get(order.customer_id, order.customer_id)
        pseudonym = erased.get(customer_id)
        if pseudonym is not None:
            customer_id = pseudonym
        version_at, rank = ensure_aware(order.version_at), STATUS_RANK[order.status]
        known = versions.get(order.order_id)
        if known is not None and (known[0], known[1]) > (version_at, rank):
            continue
        was_valid = known is not None and known[2]
        valid = order.is_valid_purchase
        versions[order.order_id] = (version_at, rank, valid)
        rows[order.order_id] = {
            "order_id": order.order_id,
            "customer_id": customer_id,
            "status": order.status.value,
            "valid": valid,
            "created_at": order.created_at,
            # an order counts at its payment; a valid order without paid_at at its creation
            "paid_at": (order.paid_at or order.created_at) if valid else None,
            "version_at": order.version_at,
            "status_rank": rank,
            "net_amount_e4": to_e4(order.net_amount),
            "currency": order.currency,
        }
        if detect_first_purchase and valid and not was_valid and not pseudonym:
            became_valid.setdefault(customer_id, {})[order.order_id] = ensure_aware(
                order.paid_at or order.created_at
            )
            arrivals[order.order_id] = ensure_aware(event.occurred_at)
    repo.write_orders(
        [row for key, row in rows.items() if key not in stored],
        [row for key, row in rows.items() if key in stored],
    )
    repo.forget(CustomerOrder, set(rows))
    _fill_regions(repo, events, owners, erased)
    return _first_purchases(repo, became_valid, versions, arrivals)


def _fill_regions(
    repo: Projections,
    events: Sequence[OrderRecordedEvent],
    owners: dict[str, str],
    erased: dict[str, str],
) -> None:
    """A customer's province and city from their orders' shipping address while profile
    has not told them (a welcome sent on the first order would otherwise render null).

    Profile's ``profile.updated`` stays the truth: it overwrites these when it arrives.
    """
    regions: dict[str, tuple[str | None, str | None]] = {}
    for event in events:  # topic order: the last address of a customer wins
        order = event.data
        customer_id = owners.get(order.customer_id, order.customer_id)
        shipping = order.shipping
        if customer_id in erased or shipping is None or not (shipping.province or shipping.city):
            continue
        regions[customer_id] = (shipping.province, shipping.city)
    if not regions:
        return
    known = repo.audience_regions(list(regions))
    new = {c: region for c, region in regions.items() if c not in known}
    unset = {c: region for c, region in regions.items() if c in known and known[c] == (None, None)}
    repo.write_regions(new, unset, utcnow())
    repo.forget(AudienceMember, set(unset))


def _first_purchases(
    repo: Projections,
    became_valid: dict[str, dict[str, datetime]],
    versions: dict[str, tuple[datetime, int, bool]],
    arrivals: dict[str, datetime],
) -> list[Transition]:
    """Customers whose first valid purchases are among those this batch made valid.

    Whatever the batching (two orders in one request, an import, a replay): a customer
    is a first buyer when every valid order they have became valid in this batch; the
    occurrence is their earliest purchase, so a redelivery names the same occurrence.
    """
    found = []
    for customer_id, candidates in became_valid.items():
        still = {o: at for o, at in candidates.items() if versions[o][2]}
        if still and repo.valid_order_count(customer_id) == len(still):
            first = min(still, key=lambda o: (still[o], o))
            found.append(
                Transition(
                    "first_purchase",
                    customer_id,
                    key=first,
                    purchased_at=still[first],
                    arrived_at=arrivals.get(first),
                )
            )
    return found


def apply_receipts(session: Session, events: Sequence[MessageReceiptRecordedEvent]) -> None:
    erased = Erasures(session).erased([e.data.customer_id for e in events])
    Projections(session).add_receipts(
        [
            {
                "message_id": e.data.message_id,
                "status": e.data.status.value,
                "campaign_id": e.data.campaign_id,
                "customer_id": erased.get(e.data.customer_id, e.data.customer_id),
                "at": e.data.at,
                "reason": e.data.reason,
            }
            for e in events
        ]
    )
