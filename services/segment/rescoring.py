"""The batch path: refresh expired windows, recompute the cut points, score everyone (or the
day sweep's customers), write and publish only who changed. Flush, never commit."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from services.segment import predictive, published_state, repository, scoring
from services.segment.changes import (
    SNAPSHOT_FIELDS,
    StateChanges,
    joined_snapshots,
    snapshot_columns,
)
from services.segment.context_repository import CutPointSets
from services.segment.cut_points import compute_cut_points
from services.segment.models import CutPointSet
from services.segment.repository import Customers, OrderStates, lock_customers_for_rescoring
from services.segment.scoring import column_values, memberships, plain_rows
from services.segment.scoring_context import ScoringContext, load_context
from shared.bus import add_raw_to_outbox
from shared.db import chunks
from shared.events import utcnow


def reaggregate_customers(
    session: Session, customer_ids: Sequence[str], now: datetime, context: ScoringContext
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recompute these customers' aggregates from their orders; write only those.

    Returns their ``published_state.STATE_FIGURES`` as they were (as last published) and as they
    are now, indexed by customer id: the snapshot, state hash and memberships stay as
    published, and the rescoring that follows compares the two states to find the change.
    """
    orders = OrderStates(session).frame_for(customer_ids)
    aggregates = scoring.aggregate_orders(orders, now, context.policy)
    rows = plain_rows(aggregates[scoring.AGGREGATE_COLUMNS])
    customers = Customers(session)
    stored = customers.snapshots([row["customer_id"] for row in rows])
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for row in rows:
        row["aggregated_at"] = now
        (updates if row["customer_id"] in stored else inserts).append(row)
    # orders of a customer without a row (not written by the consumer): no state published
    unpublished = {"policy_version": context.policy_version, "scored_at": now}
    customers.insert_many(
        [{**row, **unpublished, "segments": [], "state_hash": None} for row in inserts]
    )
    customers.update_many(updates)
    names = ["customer_id", *published_state.STATE_FIGURES]
    return (
        _figures_frame([{n: row[n] for n in names} for row in stored.values()]),
        _figures_frame([{n: row[n] for n in names} for row in rows]),
    )


def _figures_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", *published_state.STATE_FIGURES])
    for name in ("first_order_at", "last_order_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    for name in ("frequency", "monetary_e4"):
        frame[name] = frame[name].astype("int64")
    return frame.set_index("customer_id")


@dataclass
class RescoringOutcome:
    policy_version: int
    as_of: datetime
    customers: int
    changed: int
    refreshed_windows: int
    cut_points: dict[str, Any]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)


def rescore_all(
    session: Session,
    now: datetime,
    recompute: bool = True,
    reaggregate: bool = False,
    customer_ids: Sequence[str] | None = None,
) -> RescoringOutcome:
    """The batch path: refresh windows, recompute cut points, score everyone, publish changes.

    Runs on a schedule (new cut points), on a policy change, on a new segment, and on
    demand; with ``customer_ids`` (and ``recompute=False``), only those customers: the day
    sweep (``sweep.py``). Who changed is found as in the per-event path
    (``published_state.state_changed``: the stored state hash and figures against the new ones);
    only they are written and published.
    """
    assert customer_ids is None or not (recompute or reaggregate)
    started = time.perf_counter()
    lock_customers_for_rescoring(session)
    context = load_context(session, now)
    policy = context.policy
    customers = Customers(session)
    if reaggregate:
        # the window itself changed: everyone's F and M are recounted from their orders
        expiring = OrderStates(session).customers_with_orders()
    else:
        # orders that left the window since the customer's last event: re-aggregate first
        expiring = customers.with_window_expiring(now - timedelta(days=policy.window_days))
        if customer_ids is not None:
            wanted = set(customer_ids)
            expiring = [c for c in expiring if c in wanted]
    published = reaggregated = _figures_frame([])
    if expiring:
        parts = [reaggregate_customers(session, c, now, context) for c in chunks(expiring, 5000)]
        published = pd.concat([before for before, _ in parts])
        reaggregated = pd.concat([after for _, after in parts])
    phases = {"refresh": time.perf_counter() - started, "score": 0.0, "write": 0.0}
    pages = customers.rescoring_pages(bool(context.segments), customer_ids)
    mark = time.perf_counter()
    # everyone in one page: the cut points from it (one read, as before paging)
    one_page = recompute and customers.count() <= repository.RESCORING_PAGE
    first = next(pages, None) if one_page else None
    phases["read"] = time.perf_counter() - mark
    if recompute:
        mark = time.perf_counter()
        if one_page:
            inputs = first if first is not None else customers.cut_point_inputs()
        else:
            # from everyone first (four columns), so every page is scored against the
            # same, exact cut points
            inputs = customers.cut_point_inputs()
        context.cut_points = compute_cut_points(inputs, policy, context.policy_version, now)
        del inputs
        CutPointSets(session).add(
            CutPointSet(
                policy_version=context.policy_version,
                as_of=now,
                computed_at=utcnow(),
                body=context.cut_points.to_json(),
            )
        )
        phases["cut points"] = time.perf_counter() - mark
    scored = changed = 0
    mark = time.perf_counter()
    for frame in itertools.chain([first] if first is not None else [], pages):
        phases["read"] += time.perf_counter() - mark
        mark = time.perf_counter()
        page_published, page_reaggregated = (
            _of_page(published, frame),
            _of_page(reaggregated, frame),
        )
        scores = scoring.score_aggregates(frame, policy, context.cut_points, now)
        member_lists = memberships(
            predictive.with_predictions(session, scores, context.segments), context.segments
        )
        hashes = published_state.state_hashes(scores, member_lists)
        # only re-aggregated customers' figures can differ from the stored (published) ones
        moved = np.zeros(len(frame), dtype=bool)
        if len(page_reaggregated):
            moved = frame["customer_id"].isin(page_reaggregated.index).to_numpy()
        indexes = np.flatnonzero(
            published_state.state_changed(
                _overlay(frame, page_published, ["state_hash", *published_state.STATE_FIGURES]),
                _overlay(scores, page_reaggregated, published_state.STATE_FIGURES),
                hashes,
                moved,
            )
        )
        phases["score"] += time.perf_counter() - mark
        mark = time.perf_counter()
        _write_rescoring(
            session, scores, member_lists, hashes, indexes, context, now, page_published
        )
        phases["write"] += time.perf_counter() - mark
        scored += len(scores)
        changed += len(indexes)
        del frame, scores, member_lists, hashes
        mark = time.perf_counter()
    return RescoringOutcome(
        policy_version=context.policy_version,
        as_of=now,
        customers=scored,
        changed=changed,
        refreshed_windows=len(expiring),
        cut_points=context.cut_points.to_json(),
        seconds=round(time.perf_counter() - started, 3),
        phases={k: round(v, 3) for k, v in phases.items()},
    )


def _write_rescoring(
    session: Session,
    scores: pd.DataFrame,
    member_lists: list[list[str]],
    hashes: np.ndarray,
    indexes: np.ndarray,
    context: ScoringContext,
    now: datetime,
    published: pd.DataFrame,
) -> None:
    # In chunks, each written (rows, memberships, events) before the next is built: a
    # policy change rewrites most customers, and building every changed row, stored
    # snapshot and event at once peaked at 10.2 GiB for 1,000,000 customers (844,135
    # changes; `python bench/bench_segment.py`, policy change phase, commit eb3e349).
    # Still one transaction: the caller's.
    for start in range(0, len(indexes), RESCORING_WRITE_CHUNK):
        _write_rescoring_chunk(
            session,
            scores,
            member_lists,
            hashes,
            indexes[start : start + RESCORING_WRITE_CHUNK],
            context,
            now,
            published,
        )


#: changed customers a full rescoring writes per step (bounds its memory, not its result)
RESCORING_WRITE_CHUNK = 20_000


def _write_rescoring_chunk(
    session: Session,
    scores: pd.DataFrame,
    member_lists: list[list[str]],
    hashes: np.ndarray,
    indexes: np.ndarray,
    context: ScoringContext,
    now: datetime,
    published: pd.DataFrame,
) -> None:
    # Column by column, not a dict per customer: a policy change rewriting 168,741 of
    # 200,000 customers spent 7.5 s of CPU in this write with a dict per row (plain_rows,
    # the stored rows read whole, snapshot_of and orjson per event: 44 µs a customer),
    # 3.5 s so (21 µs; medians of 3, `bench/bench_segment.py --phase policy`). The events
    # are the same bytes: tests/segment/test_changes_columns.py.
    subset = scores.iloc[indexes]
    customer_ids = subset["customer_id"].tolist()
    customers = Customers(session)
    stored = customers.published_states(customer_ids)
    segments = [member_lists[i] for i in indexes.tolist()]
    n = len(customer_ids)
    written = [*_SCORE_WRITE_COLUMNS, "segments", "state_hash", "policy_version", "scored_at"]
    customers.update_columns(
        [
            *(column_values(subset[c]) for c in _SCORE_WRITE_COLUMNS),
            # tuples (written as JSON lists): their few distinct texts are encoded once
            [tuple(s) for s in segments],
            hashes[indexes].tolist(),
            [context.policy_version] * n,
            [now] * n,
            customer_ids,
        ],
        written,
        repeated=("segments", "policy_version", "scored_at"),
    )

    # without custom segments the frame has no currency: the stored row has it
    after = subset[[c for c in _SNAPSHOT_SOURCE if c in subset.columns]].reset_index(drop=True)
    if "currency" not in after.columns:
        after["currency"] = stored["currency"].to_numpy(dtype=object)
    after_fields = snapshot_columns(after)
    before_fields = _published_fields(customer_ids, stored, after_fields, published)
    # a row without a state hash holds aggregates whose state was never published
    known = stored["state_hash"].notna().to_numpy().tolist()
    changes = StateChanges(
        context.policy_version, now, predictive.event_predictions(session, customer_ids)
    )
    before_texts = joined_snapshots(before_fields)
    changes.add_encoded(
        customer_ids,
        [text if k else None for text, k in zip(before_texts, known, strict=True)],
        [s if k else () for s, k in zip(stored["segments"].tolist(), known, strict=True)],
        joined_snapshots(after_fields),
        segments,
    )
    changes.store_memberships(session)
    add_raw_to_outbox(session, changes.records)


#: the snapshot fields of the published figures (published_state.STATE_FIGURES)
_FIGURE_FIELDS = ("frequency", "monetary", "currency", "first_order_at", "last_order_at")


def _published_fields(
    customer_ids: list[str],
    stored: pd.DataFrame,
    after_fields: dict[str, list[str]],
    published: pd.DataFrame,
) -> dict[str, list[str]]:
    """The JSON fields of each changed customer's last published snapshot: the stored
    scores and labels; the figures are the ones the page read (the stored ones, so their
    text is that of ``after_fields``: encoded once), but those of re-aggregated customers
    as they were published (``published``: their stored figures are already the new ones)."""
    fields = snapshot_columns(
        stored.reset_index(drop=True), [f for f in SNAPSHOT_FIELDS if f not in _FIGURE_FIELDS]
    )
    fields.update({name: after_fields[name] for name in _FIGURE_FIELDS})
    if len(published):
        positions = pd.Index(customer_ids).get_indexer(published.index)
        found = positions >= 0
        if found.any():
            was = snapshot_columns(published[found], _FIGURE_FIELDS)
            targets = positions[found].tolist()
            for name in _FIGURE_FIELDS:
                column = fields[name] = list(fields[name])
                for position, text in zip(targets, was[name], strict=True):
                    column[position] = text
    return fields


def _of_page(figures: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``figures`` (indexed by customer id) of the customers in this page."""
    if figures.empty:
        return figures
    return figures[figures.index.isin(frame["customer_id"])]


def _overlay(base: pd.DataFrame, figures: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``base``'s ``columns``, with the values of the customers in ``figures`` (indexed by
    customer id) taken from it; a column ``base`` lacks (the currency, read only with
    custom segments) holds theirs alone."""
    if figures.empty:
        return base
    out = pd.DataFrame(
        {c: base[c] if c in base.columns else pd.Series(None, base.index, object) for c in columns}
    )
    positions = pd.Index(base["customer_id"]).get_indexer(figures.index)
    found = positions >= 0
    for name in figures.columns.intersection(columns):
        column = out[name].copy()
        column.iloc[positions[found]] = figures[name].array[found]
        out[name] = column
    return out


_SCORE_WRITE_COLUMNS = scoring.SCORE_COLUMNS
_SNAPSHOT_SOURCE = [
    "customer_id",
    "currency",
    "frequency",
    "monetary_e4",
    "first_order_at",
    "last_order_at",
    *_SCORE_WRITE_COLUMNS,
]


def cut_points_stale(session: Session, now: datetime, growth: float = 0.1) -> bool:
    """Whether the scored population grew by more than ``growth`` since the last cut points.

    A new deployment starts with no distribution: the first customers would all be
    scored against empty cut points until the daily batch. A frequent cheap check
    reruns the batch early while the population is still growing fast.
    """
    context = load_context(session, now)
    scored = Customers(session).scored_count()
    population = context.cut_points.population
    return scored > 0 and scored > population + max(population * growth, 0.5)
