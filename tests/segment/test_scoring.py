"""The pure scoring functions: quintiles, fixed breakpoints, segments, lifecycle, buckets, quadrants."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from services.segment import local_days, money, published_state, scoring
from services.segment.cut_points import CutPoints, compute_cut_points
from services.segment.policy import (
    DEFAULT_POLICY,
    Breakpoints,
    QuadrantBreakpoints,
    ScoringPolicy,
    SegmentCell,
)
from services.segment.scoring import aggregate_orders, rescore, score_aggregates
from tests.segment.helpers import NOW


def aggregates(rows: list[dict]) -> pd.DataFrame:
    base = {
        "currency": "CNY",
        "order_count": 1,
        "total_spent_e4": 0,
        "frequency": 1,
        "monetary_e4": 0,
        "window_oldest_at": None,
        "channels": (),
        "categories": (),
        "province": None,
        "city": None,
    }
    out = []
    for i, row in enumerate(rows):
        days = row.pop("recency", 1)
        first = row.pop("first", days)
        item = {**base, "customer_id": f"c{i:03d}", **row}
        item["last_order_at"] = None if days is None else NOW - timedelta(days=days)
        item["first_order_at"] = None if days is None else NOW - timedelta(days=first)
        out.append(item)
    frame = pd.DataFrame(out)
    frame["last_order_at"] = pd.to_datetime(frame["last_order_at"], utc=True)
    frame["first_order_at"] = pd.to_datetime(frame["first_order_at"], utc=True)
    return frame[scoring.AGGREGATE_COLUMNS]


def test_quintiles_split_ten_distinct_values_two_by_two() -> None:
    frame = aggregates(
        [{"frequency": f, "monetary_e4": f * 10_000, "recency": f} for f in range(1, 11)]
    )
    _, scores = rescore(frame, DEFAULT_POLICY, 1, NOW)
    assert scores["f_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scores["m_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # recency is reversed: the most recent buyers score 5
    assert scores["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scores["rfm_code"].tolist()[0] == "511"
    assert scores["rfm_code"].tolist()[-1] == "155"


def test_fixed_breakpoints_replace_quintiles() -> None:
    policy = ScoringPolicy(
        frequency=Breakpoints(method="fixed", breakpoints=[1, 2, 4, 8]),
        monetary=Breakpoints(method="fixed", breakpoints=["100", "500", "1000", "5000"]),
        recency=Breakpoints(method="fixed", breakpoints=[7, 30, 90, 180]),
    )
    frame = aggregates(
        [
            {"frequency": 1, "monetary_e4": 100 * 10_000, "recency": 7},
            {"frequency": 2, "monetary_e4": 100_0001, "recency": 8},
            {"frequency": 9, "monetary_e4": 6000 * 10_000, "recency": 400},
        ]
    )
    _, scores = rescore(frame, policy, 1, NOW)
    assert scores["f_score"].tolist() == [1, 2, 5]
    assert scores["m_score"].tolist() == [1, 2, 5]
    assert scores["r_score"].tolist() == [5, 4, 1]


def test_fixed_breakpoints_must_be_four_ascending() -> None:
    with pytest.raises(ValidationError):
        Breakpoints(method="fixed", breakpoints=[1, 3, 2, 4])
    with pytest.raises(ValidationError):
        Breakpoints(method="fixed", breakpoints=[1, 2])


@pytest.mark.parametrize(
    ("r", "f", "m", "segment"),
    [
        (5, 5, 5, "champions"),
        (5, 4, 3, "champions"),
        (4, 5, 5, "loyal"),
        (3, 4, 4, "loyal"),
        (5, 2, 3, "potential_loyalists"),
        (5, 1, 1, "new"),
        (4, 1, 1, "promising"),
        (3, 3, 3, "need_attention"),
        (3, 1, 2, "about_to_sleep"),
        (2, 3, 4, "at_risk"),
        (1, 5, 5, "cant_lose_them"),
        (2, 1, 2, "hibernating"),
        (1, 1, 1, "lost"),
    ],
)
def test_named_segment_table(r: int, f: int, m: int, segment: str) -> None:
    grid = scoring._segment_lookup(DEFAULT_POLICY)
    assert grid[r, (f + m + 1) // 2] == segment


def test_a_segment_table_must_name_every_cell() -> None:
    with pytest.raises(ValidationError, match="unnamed"):
        ScoringPolicy(segment_table=[SegmentCell(segment="all", r=(1, 5), fm=(1, 4))])


@pytest.mark.parametrize(
    ("recency", "first", "stage"),
    [
        (0, 0, "new"),
        (30, 30, "new"),
        (30, 31, "active"),
        (31, 400, "silent"),
        (90, 400, "silent"),
        (91, 400, "sleeping"),
        (180, 400, "sleeping"),
        (181, 400, "lost"),
    ],
)
def test_lifecycle_by_recency(recency: int, first: int, stage: str) -> None:
    frame = aggregates([{"recency": recency, "first": first}])
    scores = score_aggregates(
        frame, DEFAULT_POLICY, compute_cut_points(frame, DEFAULT_POLICY, 1, NOW), NOW
    )
    assert scores["lifecycle_stage"].tolist() == [stage]


def test_prospect_has_no_scores() -> None:
    frame = aggregates([{"recency": None, "order_count": 0, "frequency": 0}, {"recency": 3}])
    _, scores = rescore(frame, DEFAULT_POLICY, 1, NOW)
    prospect = scores.iloc[0]
    assert prospect["lifecycle_stage"] == "prospect"
    assert pd.isna(prospect["r_score"]) and prospect["rfm_segment"] is None
    assert prospect["purchase_bucket"] is None and prospect["value_quadrant"] is None
    assert scores.iloc[1]["r_score"] == 5  # the prospect is not in the quintiles


def test_purchase_and_funnel_buckets() -> None:
    frame = aggregates([{"order_count": n} for n in range(1, 8)])
    _, scores = rescore(frame, DEFAULT_POLICY, 1, NOW)
    assert scores["purchase_bucket"].tolist() == ["1", "2", "3", "4+", "4+", "4+", "4+"]
    assert scores["funnel_bucket"].tolist() == ["1", "2", "3-4", "3-4", "5+", "5+", "5+"]


def test_value_quadrants_against_medians() -> None:
    frame = aggregates(
        [
            {"frequency": 5, "monetary_e4": 900},
            {"frequency": 1, "monetary_e4": 900},
            {"frequency": 5, "monetary_e4": 100},
            {"frequency": 1, "monetary_e4": 100},
            {"frequency": 3, "monetary_e4": 500},
        ]
    )
    _, scores = rescore(frame, DEFAULT_POLICY, 1, NOW)
    assert scores["value_quadrant"].tolist() == [
        "premium",
        "potential",
        "problem",
        "pending",
        "pending",
    ]


def test_days_are_counted_in_the_policy_timezone() -> None:
    # 23:30 in Shanghai yesterday is 15:30 UTC; as of 00:30 Shanghai today that is 1 day
    last = pd.Timestamp("2026-11-19T15:30:00Z")
    as_of = pd.Timestamp("2026-11-19T16:30:00Z").to_pydatetime()
    frame = aggregates([{"recency": 1}])
    frame["last_order_at"] = pd.Series([last])
    days = local_days.recency_days(frame, as_of, DEFAULT_POLICY)
    assert days.tolist() == [1.0]
    utc = ScoringPolicy(timezone="UTC")
    assert local_days.recency_days(frame, as_of, utc).tolist() == [0.0]


def _orders(rows: list[dict]) -> pd.DataFrame:
    base = {"currency": "CNY", "channel": "tmall", "categories": (), "province": None, "city": None}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    frame["purchased_at"] = pd.to_datetime(frame["purchased_at"], utc=True)
    frame["created_at"] = frame["purchased_at"]
    return frame


def test_refunds_cancellations_and_the_window() -> None:
    day = pd.Timedelta(days=1)
    now = pd.Timestamp(NOW)
    frame = _orders(
        [
            {
                "customer_id": "a",
                "order_id": "1",
                "valid": True,
                "purchased_at": now - 2 * day,
                "net_e4": 1_000_000,
            },
            # partially refunded: counts, with the net amount
            {
                "customer_id": "a",
                "order_id": "2",
                "valid": True,
                "purchased_at": now - 3 * day,
                "net_e4": 400_000,
            },
            # refunded / cancelled: valid False, out of F and M
            {
                "customer_id": "a",
                "order_id": "3",
                "valid": False,
                "purchased_at": now - 1 * day,
                "net_e4": 0,
            },
            # older than the 365-day window: in the lifetime totals only
            {
                "customer_id": "a",
                "order_id": "4",
                "valid": True,
                "purchased_at": now - 400 * day,
                "net_e4": 50_000,
            },
            {
                "customer_id": "p",
                "order_id": "5",
                "valid": False,
                "purchased_at": now - 1 * day,
                "net_e4": 0,
            },
        ]
    )
    agg = aggregate_orders(frame, NOW, DEFAULT_POLICY).set_index("customer_id")
    assert agg.loc["a", "frequency"] == 2
    assert agg.loc["a", "monetary_e4"] == 1_400_000
    assert agg.loc["a", "order_count"] == 3
    assert agg.loc["a", "total_spent_e4"] == 1_450_000
    assert agg.loc["a", "last_order_at"] == now - 2 * day
    assert agg.loc["p", "order_count"] == 0
    # as of 10 days ago only order 4 existed
    past = aggregate_orders(
        frame,
        (now - 10 * day).to_pydatetime(),
        DEFAULT_POLICY,
        cutoff=(now - 10 * day).to_pydatetime(),
    )
    past = past.set_index("customer_id")
    assert past.loc["a", "order_count"] == 1 and past.loc["a", "frequency"] == 0  # 390 days old
    assert "p" not in past.index


@pytest.mark.parametrize("method", ["quintiles", "fixed"])
def test_the_cut_points_over_nobody_are_those_of_an_empty_aggregates_frame(method: str) -> None:
    policy = DEFAULT_POLICY
    if method == "fixed":
        policy = ScoringPolicy(
            frequency=Breakpoints(method="fixed", breakpoints=[1, 2, 4, 8]),
            monetary=Breakpoints(method="fixed", breakpoints=["100", "500", "1000", "5000"]),
            quadrants=QuadrantBreakpoints(method="fixed", frequency=2, monetary=300),
        )
    nobody = pd.DataFrame({c: pd.Series([], dtype=object) for c in scoring.AGGREGATE_COLUMNS})
    assert CutPoints.empty(policy, 3, NOW) == compute_cut_points(nobody, policy, 3, NOW)


def test_money_round_trip() -> None:
    assert money.to_e4(Decimal("199.00")) == 1_990_000
    assert str(money.from_e4(1_990_000, "CNY")) == "199.00"
    assert str(money.from_e4(1_990_050, "CNY")) == "199.005"
    assert str(money.from_e4(1_990_000, "JPY")) == "199"


def test_a_change_is_a_new_state_hash_or_a_published_figure_that_moved() -> None:
    """One definition for both paths: as dict rows (the consumer) or DataFrames (the batch)."""
    day = timedelta(days=1)
    published = {
        "state_hash": 7,
        "frequency": 2,
        "monetary_e4": 10_000,
        "currency": "CNY",
        "first_order_at": NOW - 9 * day,
        "last_order_at": None,
    }
    cases = [  # (stored row, figures now, new hash, a change)
        (published, published, 7, False),
        (published, {**published, "last_order_at": None}, 7, False),  # missing stays missing
        (published, published, 8, True),  # scores, labels or memberships moved
        (published, {**published, "frequency": 3}, 7, True),
        (published, {**published, "monetary_e4": 10_001}, 7, True),
        (published, {**published, "currency": "USD"}, 7, True),
        (published, {**published, "first_order_at": NOW - 8 * day}, 7, True),
        (published, {**published, "last_order_at": NOW}, 7, True),
        (None, published, 7, True),  # a new customer
        ({**published, "state_hash": None}, published, 7, True),  # never published
    ]
    previous = [c[0] for c in cases]
    current = [c[1] for c in cases]
    hashes = np.array([c[2] for c in cases], dtype="int64")
    expected = [c[3] for c in cases]
    assert published_state.state_changed(previous, current, hashes).tolist() == expected

    def frame(rows: list[dict | None]) -> pd.DataFrame:
        out = pd.DataFrame([r if r is not None else {"state_hash": None} for r in rows])
        out["state_hash"] = pd.array(out["state_hash"].tolist(), dtype="Int64")
        for name in ("first_order_at", "last_order_at"):
            out[name] = pd.to_datetime(out[name], utc=True)
        return out

    assert (
        published_state.state_changed(frame(previous), frame(current), hashes).tolist() == expected
    )
    # rows whose figures are known to be the very same values are not compared
    only_first = np.arange(len(cases)) < 4
    assert published_state.state_changed(previous, current, hashes, only_first).tolist() == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
        False,
        True,
        True,
    ]


def test_a_few_customers_hash_as_many_do() -> None:
    """The one-order path's state hashes (remembered value hashes) equal the batch path's
    (pandas per column), or the batch path would see every such customer as changed."""
    rng = np.random.default_rng(3)
    n = 300
    choices = {
        "rfm_code": ["555", "111", "345", None],
        "rfm_segment": ["champions", "at_risk", "lost", None],
        "lifecycle_stage": ["new", "active", "dormant", "lost", "prospect"],
        "purchase_bucket": ["1", "2", "3-5", None],
        "funnel_bucket": ["F1", "F2", "F3+", None],
        "value_quadrant": ["high_value", "low_value", None],
    }
    scores = pd.DataFrame({c: rng.choice(np.array(v, dtype=object), n) for c, v in choices.items()})
    segments = [["big", "vip"], [], ["big"], ["早鸟"]]
    memberships = [segments[i] for i in rng.integers(0, len(segments), n)]
    many = published_state.state_hashes(scores, memberships)
    assert n > published_state._FEW  # the pandas path
    few = [
        published_state.state_hashes(
            scores.iloc[start : start + 7].reset_index(drop=True), memberships[start : start + 7]
        )
        for start in range(0, n, 7)
    ]
    assert np.concatenate(few).tolist() == many.tolist()
    as_arrays = {c: scores[c].to_numpy() for c in scores}  # the consumer passes arrays
    one = published_state.state_hashes({c: v[:1] for c, v in as_arrays.items()}, memberships[:1])
    assert one.tolist() == many[:1].tolist()
    assert len(set(many.tolist())) > 50  # the values do move the hash
