"""The consumer's path: one poll batch of order versions, merges, unmerges and erasures
applied, then everyone it touched scored at once with the stored cut points. Flush, never
commit."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from services.segment import (
    incremental,
    local_days,
    prediction_refresh,
    predictive,
    published_state,
    scoring,
    unmerges,
)
from services.segment.changes import StateChanges, segment_changed_record, snapshot_of
from services.segment.clv_repository import Predictions
from services.segment.context_repository import Segments
from services.segment.identity_repository import Identities
from services.segment.models import ErasedCustomer
from services.segment.money import to_e4
from services.segment.order_history import OrderVersions
from services.segment.repository import Customers, OrderStates
from services.segment.scoring import memberships, plain_rows
from services.segment.scoring_context import ScoringContext, load_context
from shared.bus import Inbound, add_raw_to_outbox
from shared.erasure import tombstone_key
from shared.events import (
    STATUS_RANK,
    VALID_PURCHASE_STATUSES,
    Order,
    ProfileErasedPayload,
    ProfileMergedPayload,
    ensure_aware,
    utcnow,
)
from shared.registry import BatchKind


def _utc(value: datetime) -> datetime:
    # stored in UTC: SQLite keeps the wall-clock text of whatever offset it is given
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _version(order: Order) -> tuple[datetime, int]:
    """``Order.version_key()`` with a naive time read as UTC (comparable with any other)."""
    version_at, rank = order.version_key()
    return ensure_aware(version_at), rank


def order_row(order: Order, customer_id: str) -> dict[str, Any]:
    shipping = order.shipping
    status = order.status
    valid = status in VALID_PURCHASE_STATUSES  # Order.is_valid_purchase
    net = order.total_amount - order.refunded_amount  # Order.net_amount: 0 unless valid
    return {
        "order_id": order.order_id,
        "customer_id": customer_id,
        "status": status.value,
        "version_at": _utc(order.version_at),
        "status_rank": STATUS_RANK[status],
        "valid": valid,
        "created_at": _utc(order.created_at),
        "purchased_at": _utc(order.paid_at or order.created_at),
        "net_e4": to_e4(net) if valid and net > 0 else 0,
        "currency": order.currency.upper(),
        "channel": order.channel,
        "categories": sorted({i.category for i in order.items if i.category}),
        "province": shipping.province if shipping else None,
        "city": shipping.city if shipping else None,
    }


@dataclass
class BatchOutcome:
    orders_applied: int = 0
    customers_rescored: int = 0
    events: int = 0


class EventBatch:
    """Applies one poll batch: order versions, merges and erasures, then scoring once.

    Each touched customer's aggregates are updated from the old and new version of each
    of their changed orders (:mod:`services.segment.incremental`) when that alone
    determines them, else re-aggregated from all of their stored orders with
    ``scoring.aggregate_orders``; then everyone touched is scored at once.
    """

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.context = load_context(session, now)
        self.window_start = now - timedelta(days=self.context.policy.window_days)
        self.pending: dict[str, Order] = {}
        #: every version received (the valid-time history keeps them all)
        self.versions: list[Order] = []
        self.affected: set[str] = set()
        #: stored customer rows as loaded (None: no row), the last published snapshots
        self.stored: dict[str, dict[str, Any] | None] = {}
        #: aggregates kept current in memory from order changes
        self.aggregates: dict[str, dict[str, Any]] = {}
        #: customers to re-aggregate from all of their orders
        self.recompute: set[str] = set()
        self.records: list[tuple[str, str, bytes]] = []
        self.outcome = BatchOutcome()

    def add_order(self, order: Order) -> None:
        self.versions.append(order)
        held = self.pending.get(order.order_id)
        if held is None or _version(order) > _version(held):
            self.pending[order.order_id] = order

    def _recompute(self, customer_id: str) -> None:
        self.recompute.add(customer_id)
        self.aggregates.pop(customer_id, None)

    def recompute_from_orders(self, customer_id: str) -> None:
        """Re-aggregate and score this customer from all of its orders in this batch."""
        self.affected.add(customer_id)
        self._recompute(customer_id)

    def _load(self, customer_ids: Iterable[str]) -> None:
        """Stored rows of customers not seen yet in this batch; their aggregates to update."""
        missing = sorted({c for c in customer_ids if c not in self.stored})
        if not missing:
            return
        rows = Customers(self.session).snapshots(missing)
        new = [c for c in missing if c not in rows]
        # a customer without a row has no orders (never hit in practice: checked anyway)
        with_orders = OrderStates(self.session).customers_having_orders(new)
        for customer_id in missing:
            row = rows.get(customer_id)
            self.stored[customer_id] = row
            if customer_id in self.recompute:
                continue
            if row is None and customer_id not in with_orders:
                self.aggregates[customer_id] = incremental.empty_aggregate(customer_id)
            elif row is not None and incremental.still_current(row, self.now, self.window_start):
                self.aggregates[customer_id] = incremental.from_stored(row)
            else:
                self._recompute(customer_id)

    def flush_orders(self) -> None:
        if not self.pending:
            return
        orders, self.pending = self.pending, {}
        versions, self.versions = self.versions, []
        identities = Identities(self.session)
        survivors = identities.survivors(sorted({o.customer_id for o in versions}))
        owners = {o.order_id: survivors.get(o.customer_id, o.customer_id) for o in orders.values()}
        erased = identities.erased(
            sorted({survivors.get(o.customer_id, o.customer_id) for o in versions})
        )
        history = []
        for version in versions:  # late or repeated versions too: the history is append-only
            owner = survivors.get(version.customer_id, version.customer_id)
            if owner not in erased or ensure_aware(version.created_at) > erased[owner]:
                history.append(order_row(version, owner))
        OrderVersions(self.session).add_many(history)
        states = OrderStates(self.session)
        stored = states.rows(sorted(orders))
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        changes: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = []
        for order_id, order in orders.items():
            owner = owners[order_id]
            if owner in erased and ensure_aware(order.created_at) <= erased[owner]:
                continue
            known = stored.get(order_id)
            if known is not None and _version(order) <= (
                known["version_at"],
                known["status_rank"],
            ):
                continue
            row = order_row(order, owner)
            (updates if known is not None else inserts).append(row)
            self.affected.add(owner)
            if known is not None and known["customer_id"] != owner:
                # the order moved: its former customer loses it, the new one gains it
                self.affected.add(known["customer_id"])
                self._recompute(known["customer_id"])
                known = None
            changes.append((owner, known, row))
        self._load(owner for owner, _, _ in changes)
        states.insert_many(inserts)
        states.update_many(updates)
        self.outcome.orders_applied += len(inserts) + len(updates)
        for owner, old, new in changes:
            aggregate = self.aggregates.get(owner)
            if aggregate is not None and not incremental.apply_change(
                aggregate, old, new, self.window_start
            ):
                self._recompute(owner)

    def merge(self, merge: ProfileMergedPayload) -> None:
        self.flush_orders()
        survivor = merge.survivor_id
        merged = [m for m in dict.fromkeys(merge.merged_ids) if m != survivor]
        if not merged:
            return
        OrderStates(self.session).reassign(merged, survivor)
        OrderVersions(self.session).reassign(merged, survivor)
        Identities(self.session).add_aliases(merged, survivor, merge.merge_id)
        for customer_id in merged:
            self._remove(customer_id)
        self.affected.difference_update(merged)
        self.affected.add(survivor)
        self._recompute(survivor)

    def erase(self, erasure: ProfileErasedPayload) -> None:
        self.flush_orders()
        customer_id = erasure.customer_id
        OrderStates(self.session).delete_for(customer_id)
        OrderVersions(self.session).delete_for(customer_id)
        identities = Identities(self.session)
        identities.forget_aliases_of(customer_id)
        identities.add_erasure(
            ErasedCustomer(
                customer_hash=tombstone_key(customer_id),
                erasure_id=erasure.erasure_id,
                requested_at=_utc(erasure.requested_at),
                erased_at=utcnow(),
            )
        )
        self._remove(customer_id)
        self.affected.discard(customer_id)
        # a later order in this batch starts a new relationship
        self.recompute.discard(customer_id)
        self.aggregates[customer_id] = incremental.empty_aggregate(customer_id)

    def _remove(self, customer_id: str) -> None:
        customers = Customers(self.session)
        stored = customers.snapshots([customer_id]).get(customer_id)
        self.stored[customer_id] = None
        self.aggregates.pop(customer_id, None)
        self.recompute.discard(customer_id)
        if stored is None:
            return
        segments = Segments(self.session)
        segments.remove_customer(customer_id)
        segments.refresh_counts(stored.get("segments") or [])
        customers.delete(customer_id)
        Predictions(self.session).delete_for(customer_id)
        self.records.append(
            segment_changed_record(
                customer_id,
                self.context.policy_version,
                self.now,
                snapshot_of(stored),
                None,
                [],
                stored.get("segments") or [],
                removed=True,
            )
        )

    def finish(self) -> BatchOutcome:
        self.flush_orders()
        if self.affected:
            affected = sorted(self.affected)
            missing = [c for c in affected if c not in self.stored]
            if missing:
                found = Customers(self.session).snapshots(missing)
                self.stored.update({c: found.get(c) for c in missing})
            rows: dict[str, dict[str, Any]] = {}
            again = [c for c in affected if c in self.recompute]
            if again:
                orders = OrderStates(self.session).frame_for(again)
                aggregates = scoring.aggregate_orders(orders, self.now, self.context.policy)
                for row in plain_rows(aggregates):
                    row["channels"], row["categories"] = (
                        list(row["channels"]),
                        list(row["categories"]),
                    )
                    rows[row["customer_id"]] = row
            for customer_id in affected:
                aggregate = self.aggregates.get(customer_id)
                if customer_id in self.recompute or aggregate is None:
                    continue
                if not aggregate["_empty"]:
                    rows[customer_id] = incremental.finished(aggregate)
            # a scored customer whose orders all moved to another customer leaves scoring, as
            # if they had never ordered: their row and memberships go, and a removal is
            # published so that profile and campaign drop the ghost (it stayed `new`, F=1)
            for customer_id in again:
                if customer_id not in rows and self.stored.get(customer_id) is not None:
                    self._remove(customer_id)
            ordered = [rows[c] for c in affected if c in rows]
            self.outcome.customers_rescored += len(ordered)
            self.records.extend(
                score_and_store(self.session, ordered, self.stored, self.now, self.context)
            )
        add_raw_to_outbox(self.session, self.records)
        self.outcome.events += len(self.records)
        return self.outcome


def start(session: Session, messages: list[Inbound], clock: Callable[[], datetime]) -> EventBatch:
    return EventBatch(session, clock())


def finish(batch: EventBatch) -> BatchOutcome:
    return batch.finish()


#: the whole poll batch is one run: every message in order, then one scoring of whom they
#: touched (each event type's step is registered in ``handlers.HANDLERS``)
SCORING: BatchKind[Callable[[], datetime], EventBatch] = BatchKind(start, finish)


def apply_order(batch: EventBatch, message: Inbound) -> None:
    batch.add_order(message.event.data)


def apply_merge(batch: EventBatch, message: Inbound) -> None:
    batch.merge(message.event.data)


def apply_erasure(batch: EventBatch, message: Inbound) -> None:
    batch.erase(message.event.data)
    # the deleted orders and scores must not stay readable in SQLite's WAL
    message.checkpoint_after_commit = True


def apply_unmerge(batch: EventBatch, message: Inbound) -> None:
    unmerges.apply_unmerge(batch, message.event.data)


def apply_messages(session: Session, messages: Sequence[Inbound], now: datetime) -> None:
    """The consumer's batch as of ``now``: every message in order (through
    ``handlers.HANDLERS``), then one scoring of whom they touched."""
    from services.segment.handlers import HANDLERS  # it registers this module's steps

    HANDLERS.dispatch(session, messages, lambda: now)


_UNIX_ORDINAL = date(1970, 1, 1).toordinal()


def _day_numbers(values: Sequence[datetime | None], zone: ZoneInfo) -> np.ndarray:
    """``local_days.local_day_numbers`` for a few Python datetimes (NaN for None)."""
    return np.array(
        [
            np.nan if v is None else float(v.astimezone(zone).toordinal() - _UNIX_ORDINAL)
            for v in values
        ],
        dtype="float64",
    )


def score_and_store(
    session: Session,
    aggregates: list[dict[str, Any]],
    stored: dict[str, dict[str, Any] | None],
    now: datetime,
    context: ScoringContext,
) -> list[tuple[str, str, bytes]]:
    """Score these customers' aggregates at once, store them, return the change events.

    The per-event path: ``scoring.score_arrays`` (the core of ``score_aggregates``, which the
    batch uses) with the stored cut points, on plain arrays. ``stored`` holds the rows
    as they were before the batch (None: a new customer).
    """
    if not aggregates:
        return []
    policy = context.policy
    n = len(aggregates)
    zone = ZoneInfo(policy.timezone)
    today = local_days.local_day_number(now, policy.timezone)
    counts = np.fromiter((a["order_count"] for a in aggregates), dtype="int64", count=n)
    frequency = np.fromiter((a["frequency"] for a in aggregates), dtype="float64", count=n)
    monetary = np.fromiter((a["monetary_e4"] for a in aggregates), dtype="float64", count=n)
    last = _day_numbers([a["last_order_at"] for a in aggregates], zone)
    first = _day_numbers([a["first_order_at"] for a in aggregates], zone)
    with np.errstate(invalid="ignore"):
        recency = np.maximum(today - last, 0)
    columns = scoring.score_arrays(
        counts, frequency, monetary, recency, today - first, policy, context.cut_points
    )
    # predictions that include this batch's purchases, before rules and events read them
    prediction_refresh.refresh(
        session, [a["customer_id"] for a in aggregates], now, policy.timezone
    )
    if context.segments:
        frame = predictive.with_predictions(
            session, _rules_frame(aggregates, columns), context.segments
        )
        member_lists = memberships(frame, context.segments)
    else:
        member_lists = [[] for _ in range(n)]
    state_hashes = published_state.state_hashes(columns, member_lists)
    previous = [stored.get(a["customer_id"]) for a in aggregates]
    changed = published_state.state_changed(previous, aggregates, state_hashes).tolist()
    hashes = state_hashes.tolist()
    scored = columns["scored"].tolist()
    # column by column, then one tuple of score values per customer
    score_values = [
        [v if s else None for v, s in zip(columns[c].astype("int64").tolist(), scored, strict=True)]
        for c in _INT_SCORES
    ] + [columns[c].tolist() for c in _LABEL_SCORES]
    rows = []
    changed_ids = [a["customer_id"] for a, c in zip(aggregates, changed, strict=True) if c]
    changes = StateChanges(
        context.policy_version, now, predictive.event_predictions(session, changed_ids)
    )
    extra = {"policy_version": context.policy_version, "scored_at": now, "aggregated_at": now}
    for aggregate, values, segments, state_hash, before, is_changed in zip(
        aggregates,
        zip(*score_values, strict=True),
        member_lists,
        hashes,
        previous,
        changed,
        strict=True,
    ):
        row = dict(aggregate)
        row.update(zip(_SCORES, values, strict=True))
        row.update(extra)
        row["segments"], row["state_hash"] = segments, state_hash
        rows.append(row)
        if is_changed:
            changes.add(before, row, segments)
    Customers(session).upsert_many(rows)
    changes.store_memberships(session)
    return changes.records


def _rules_frame(aggregates: list[dict[str, Any]], columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The scores frame custom-segment rules read, from the scores already computed."""
    frame = pd.DataFrame(
        {name: [a[name] for a in aggregates] for name in scoring.AGGREGATE_COLUMNS}
    )
    for name in ("first_order_at", "last_order_at", "window_oldest_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    for name in ("channels", "categories"):
        frame[name] = frame[name].map(tuple)
    return scoring.with_scores(frame, columns)


_INT_SCORES = ["recency_days", "r_score", "f_score", "m_score"]
_LABEL_SCORES = [c for c in scoring.SCORE_COLUMNS if c not in _INT_SCORES]
_SCORES = (*_INT_SCORES, *_LABEL_SCORES)
