"""The full rescoring encodes its ``segment.changed`` events column by column
(``snapshot_texts``, ``StateChanges.add_encoded``): the very bytes of the per-customer path
(``snapshot_of``, ``StateChanges.add``) for the same customers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest
from sqlalchemy import text

from services.segment import changes, predictive, rescoring, scoring_context
from services.segment.changes import (
    SNAPSHOT_FIELDS,
    SNAPSHOT_WRITE_COLUMNS,
    StateChanges,
    snapshot_of,
    snapshot_texts,
)
from services.segment.models import CustomSegment
from services.segment.money import money_text
from services.segment.policy import ScoringPolicy
from services.segment.repository import Customers
from services.segment.scoring import plain_rows
from shared.outbox import add_raw_to_outbox
from tests.conftest import outbox_values
from tests.segment.helpers import database, recorded
from tests.segment.test_paths import RICH, feed, history, normalise

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
LABELS = [None, "champions", "at_risk", "1-2", "5+", 'say "hi"', "新客", "back\\slash"]
CURRENCIES = [None, "CNY", "JPY", "KWD", "usd", ""]


def random_rows(seed: int, n: int) -> list[dict]:
    """Customer rows as the per-customer path sees them (plain Python values)."""
    rng = random.Random(seed)

    def moment() -> datetime | None:
        choice = rng.random()
        if choice < 0.15:
            return None
        at = NOW - timedelta(days=rng.randint(0, 3000), seconds=rng.randint(0, 86_399))
        # whole seconds (no fraction written) and microseconds alike
        return at if choice < 0.5 else at.replace(microsecond=rng.randint(0, 999_999))

    def amount() -> int:
        return rng.choice(
            [
                0,
                rng.randint(0, 10**9) * 100,  # whole cents
                rng.randint(-(10**12), 10**12),
                rng.randint(-20_000, 20_000),
                rng.randint(0, 99) * 10_000,
            ]
        )

    def score() -> int | None:
        return rng.choice([None, 1, 2, 3, 4, 5])

    rows = []
    for i in range(n):
        rows.append(
            {
                "customer_id": rng.choice([f"c{i:05d}", f'c"{i}', f"客{i}", f"c\\{i}\n"]),
                "recency_days": rng.choice([None, 0, rng.randint(1, 5000)]),
                "frequency": rng.choice([None, 0, rng.randint(1, 50)]),
                "monetary_e4": rng.choice([None, amount()]),
                "currency": rng.choice(CURRENCIES),
                "r_score": score(),
                "f_score": score(),
                "m_score": score(),
                "rfm_code": rng.choice([None, "555", "123"]),
                "rfm_segment": rng.choice(LABELS),
                "lifecycle_stage": rng.choice(LABELS),
                "purchase_bucket": rng.choice(LABELS),
                "funnel_bucket": rng.choice(LABELS),
                "value_quadrant": rng.choice(LABELS),
                "first_order_at": moment(),
                "last_order_at": moment(),
            }
        )
    return rows


def scores_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as a scores frame holds them (nullable ints, UTC times)."""
    frame = pd.DataFrame(rows)
    for name in ("recency_days", "r_score", "f_score", "m_score"):
        frame[name] = frame[name].astype("Int64")
    for name in ("first_order_at", "last_order_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    frame["frequency"] = frame["frequency"].fillna(0).astype("int64")
    frame["monetary_e4"] = frame["monetary_e4"].fillna(0).astype("int64")
    return frame


def test_the_template_has_the_fields_of_snapshot_of() -> None:
    assert tuple(snapshot_of({})) == SNAPSHOT_FIELDS


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snapshot_texts_are_orjson_of_snapshot_of(seed: int) -> None:
    rows = random_rows(seed, 3000)
    expected = [orjson.dumps(snapshot_of(row)).decode() for row in rows]
    # as the scores frame holds them, and as a frame of stored Python values
    assert snapshot_texts(scores_frame(rows)) == expected
    stored = pd.DataFrame(rows).astype(object)
    stored = stored.where(stored.notna(), None)
    for name in ("first_order_at", "last_order_at"):
        # the rescoring's published figures: naive UTC datetime64
        stored[name] = (
            pd.to_datetime(stored[name], utc=True).dt.tz_convert(None).astype("datetime64[us]")
        )
    assert snapshot_texts(stored) == expected


def test_money_is_money_text() -> None:
    amounts = [*range(-30_000, 30_000, 7), 10**15 + 1, -(10**15), 123_456_789_000]
    for currency in CURRENCIES:
        rows = [{"monetary_e4": a, "currency": currency} for a in amounts]
        texts = snapshot_texts(scores_frame([{**random_rows(0, 1)[0], **r} for r in rows]))
        monies = [orjson.loads(t)["monetary"] for t in texts]
        assert monies == [money_text(a, currency) for a in amounts]


def test_add_encoded_writes_the_records_of_add(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(4)
    rows = random_rows(4, 2000)
    previous_rows = random_rows(5, 2000)
    segment_ids = ["vip", "lapsed", "新", 'q"uote']
    for before in previous_rows:
        # no row, no state published, or a published state with its memberships
        before["state_hash"] = rng.choice([None, 1, 2, 3])
        before["segments"] = rng.sample(segment_ids, rng.randint(0, 3))
    previous: list[dict | None] = [
        None if rng.random() < 0.1 else before for before in previous_rows
    ]
    segments = [sorted(rng.sample(segment_ids, rng.randint(0, 3))) for _ in rows]
    predictions = {
        row["customer_id"]: {
            "fit_id": "f1",
            "currency": "CNY",
            "as_of": NOW,
            "p_alive": rng.random(),
            "expected_purchases_30d": 0.5,
            "expected_purchases_90d": None,
            "expected_purchases_365d": 2.25,
            "expected_order_value": "12.30",
            "predicted_clv": "100.00",
            "predicted_clv_percentile": 97,
        }
        for row in rows[::7]
    }

    monkeypatch.setattr(changes, "utcnow", lambda: NOW + timedelta(seconds=3))
    monkeypatch.setattr(changes, "_RANDOM", random.Random(9))
    one_by_one = StateChanges(7, NOW, predictions)
    for before, after, now in zip(previous, rows, segments, strict=True):
        one_by_one.add(before, after, now)

    monkeypatch.setattr(changes, "_RANDOM", random.Random(9))
    by_column = StateChanges(7, NOW, predictions)
    published = [b is not None and b["state_hash"] is not None for b in previous]
    stand_in = rows[0]  # any row: its text is not used where nothing was published
    before_texts = snapshot_texts(
        scores_frame([b if b is not None else stand_in for b in previous])
    )
    by_column.add_encoded(
        [row["customer_id"] for row in rows],
        [t if p else None for t, p in zip(before_texts, published, strict=True)],
        [b["segments"] if p else () for b, p in zip(previous, published, strict=True)],  # type: ignore[index]
        snapshot_texts(scores_frame(rows)),
        segments,
    )

    assert by_column.records == one_by_one.records
    assert by_column.entered == one_by_one.entered
    assert by_column.left == one_by_one.left


def test_simple_customer_ids_are_quoted_as_orjson_does(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{**row, "customer_id": f"c{i:08d}"} for i, row in enumerate(random_rows(6, 50))]
    monkeypatch.setattr(changes, "_RANDOM", random.Random(1))
    one_by_one = StateChanges(1, NOW)
    for row in rows:
        one_by_one.add(None, row, [])
    monkeypatch.setattr(changes, "_RANDOM", random.Random(1))
    by_column = StateChanges(1, NOW)
    by_column.occurred_at = one_by_one.occurred_at
    by_column.add_encoded(
        [row["customer_id"] for row in rows],
        [None] * len(rows),
        [()] * len(rows),
        snapshot_texts(scores_frame(rows)),
        [[]] * len(rows),
    )
    assert by_column.records == one_by_one.records
    assert np.all([orjson.loads(v)["key"] == k for _, k, v in by_column.records])


# --------------------------------------------------------------------------- end to end


def per_row_write_chunk(
    session, scores, member_lists, hashes, indexes, context, now, published
) -> None:
    """The rescoring's write as it was, a dict per changed customer (the reference)."""
    from services.segment.rescoring import _SCORE_WRITE_COLUMNS, _SNAPSHOT_SOURCE

    subset = scores.iloc[indexes]
    after_rows = plain_rows(subset[[c for c in _SNAPSHOT_SOURCE if c in subset.columns]])
    customer_ids = [row["customer_id"] for row in after_rows]
    stored = Customers(session).snapshots(customer_ids)
    figures = plain_rows(published[published.index.isin(customer_ids)].reset_index())
    as_published = {row.pop("customer_id"): row for row in figures}
    written = [*_SCORE_WRITE_COLUMNS, "segments", "state_hash", "policy_version", "scored_at"]
    rows = []
    state = StateChanges(
        context.policy_version, now, predictive.event_predictions(session, customer_ids)
    )
    for position, index in enumerate(indexes):
        after = after_rows[position]
        customer_id = after["customer_id"]
        segments = member_lists[index]
        rows.append(
            (
                *(after[c] for c in _SCORE_WRITE_COLUMNS),
                segments,
                int(hashes[index]),
                context.policy_version,
                now,
                customer_id,
            )
        )
        before = stored.get(customer_id)
        if before is not None:
            after.setdefault("currency", before["currency"])
            if customer_id in as_published:
                before = {**before, **as_published[customer_id]}
        state.add(before, after, segments)
    Customers(session).update_columns([list(c) for c in zip(*rows, strict=True)], written)
    state.store_memberships(session)
    add_raw_to_outbox(session, state.records)


def rescored(db, monkeypatch: pytest.MonkeyPatch, segments: bool) -> list[bytes]:
    """A policy change (a shorter window: everyone re-aggregated) rescoring a fed history
    40 days later; the segment.changed it queued."""
    events, _ = history(seed=8, customers=150, rich=True)
    if segments:
        with db.unit_of_work() as session:
            for segment_id, rule in (
                ("usd", {"field": "currency", "op": "eq", "value": "USD"}),
                ("lapsing", {"field": "recency_days", "op": "between", "value": [30, 120]}),
            ):
                session.add(
                    CustomSegment(
                        segment_id=segment_id,
                        name=segment_id,
                        description=None,
                        rule=rule,
                        member_count=0,
                        created_at=NOW,
                    )
                )
    feed(db, [recorded(o) for o in events])
    before = len(outbox_values(db))
    monkeypatch.setattr(rescoring, "RESCORING_WRITE_CHUNK", 23)
    monkeypatch.setattr(changes, "_RANDOM", random.Random(21))
    monkeypatch.setattr(changes, "utcnow", lambda: NOW + timedelta(days=40, seconds=1))
    changed = ScoringPolicy.model_validate(
        {
            "window_days": 180,
            "recency": {"method": "fixed", "breakpoints": [14, 30, 60, 120]},
            "lifecycle": {"active_days": 60, "silent_days": 120, "sleeping_days": 240},
        }
    )
    with db.unit_of_work() as session:
        _, window_changed = scoring_context.set_policy(session, changed, comment=None)
        assert window_changed
        outcome = rescoring.rescore_all(session, NOW + timedelta(days=40), reaggregate=True)
    assert outcome.changed > 3 * 23  # several chunks
    return outbox_values(db)[before:]


def stored_rows(db) -> pd.DataFrame:
    """Every stored customer row (what the rescoring wrote), as plain values."""
    columns = [*RICH, "segments", "state_hash", "policy_version", "scored_at"]
    with db.unit_of_work() as session:
        frame = Customers(session).aggregates_frame(extra=[*SNAPSHOT_WRITE_COLUMNS, "state_hash"])
    return normalise(frame, columns)


@pytest.mark.parametrize("segments", [False, True], ids=["no-segments", "segments"])
def test_a_rescoring_publishes_and_writes_what_the_per_row_write_did(
    db_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch, segments: bool
) -> None:
    by_column = database(db_url)
    reference = database(f"sqlite:///{tmp_path / 'per_row.db'}")
    expected = None
    with monkeypatch.context() as patch:
        patch.setattr(rescoring, "_write_rescoring_chunk", per_row_write_chunk)
        expected = rescored(reference, patch, segments)
    written = rescored(by_column, monkeypatch, segments)

    assert written == expected  # byte for byte, in the same order
    assert any(orjson.loads(v)["data"]["from"] is not None for v in written)
    if segments:
        assert any(orjson.loads(v)["data"]["segments_entered"] for v in written)
    pd.testing.assert_frame_equal(stored_rows(by_column), stored_rows(reference))
    with by_column.sessions() as a, reference.sessions() as b:
        query = "SELECT segment_id, customer_id FROM segment_members ORDER BY 1, 2"
        assert a.execute(text(query)).all() == b.execute(text(query)).all()
