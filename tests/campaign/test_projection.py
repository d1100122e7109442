"""The local projections: latest scores, policies, erasures, merges, orders, receipts."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text

from services.campaign.models import AudienceMember, CustomerOrder, Receipt
from services.campaign.projection import apply_audience_events, apply_orders, apply_receipts
from services.campaign.projection_repository import Erasures
from shared.db import Database
from shared.erasure import tombstone_key
from shared.events import (
    Address,
    MessageReceipt,
    MessageReceiptRecordedEvent,
    ProfileErasedEvent,
    ProfileErasedPayload,
    ProfileMergedEvent,
    ProfileMergedPayload,
    ProfileUpdatedEvent,
    ProfileUpdatedPayload,
)
from tests.campaign.factories import NOW, order_event, policy_event, segment_event, statements


def test_audience_keeps_latest_scores_and_profile_slices(db: Database) -> None:
    with db.unit_of_work() as session:
        transitions = apply_audience_events(
            session,
            [
                segment_event(
                    "c1",
                    lifecycle="silent",
                    previous_lifecycle="active",
                    entered=["s1"],
                    segments=["s1"],
                ),
                # an older snapshot arriving late is ignored
                segment_event("c1", lifecycle="active", as_of=NOW - timedelta(days=1)),
                policy_event("c1", {"sms": True}, updated_at=NOW),
                policy_event("c1", {"sms": False}, updated_at=NOW - timedelta(hours=1)),
                ProfileUpdatedEvent(
                    source="profile",
                    key="c1",
                    data=ProfileUpdatedPayload(
                        customer_id="c1", tags=["b", "a"], province="浙江省", city="杭州市"
                    ),
                ),
            ],
        )
    assert [(t.kind, t.from_value, t.to_value) for t in transitions] == [
        ("lifecycle", "active", "silent"),
        ("segment_entered", None, "s1"),
    ]
    with db.sessions() as session:
        row = session.get(AudienceMember, "c1")
        assert row is not None
        assert row.lifecycle_stage == "silent"
        assert row.segments == ["s1"]
        assert row.contact_policy["channels"]["sms"]["consented"] is True
        assert row.tags == ["a", "b"]
        assert row.city == "杭州市"


def test_erasure_clears_personal_data_and_survives_removal(db: Database) -> None:
    with db.unit_of_work() as session:
        apply_audience_events(
            session,
            [
                segment_event("c1"),
                policy_event("c1"),
                ProfileErasedEvent(
                    source="profile",
                    key="c1",
                    data=ProfileErasedPayload(customer_id="c1", erasure_id="e1", requested_at=NOW),
                ),
                segment_event("c1", removed=True),
                policy_event("c1", {"sms": True}),  # a late policy does not undo the erasure
                # nor does a replayed (or newer) score snapshot
                segment_event("c1", segments=["s1"], as_of=NOW + timedelta(days=1)),
                segment_event("c2"),
                segment_event("c2", removed=True),
            ],
        )
    with db.sessions() as session:
        # no row is left of the erased customer, only a tombstone that does not name them
        assert session.get(AudienceMember, "c1") is None
        assert Erasures(session).erased(["c1", "c2"]) == {"c1": tombstone_key("c1")}
        tombstones = session.execute(text("SELECT customer_hash FROM erased_customers"))
        assert tombstones.scalars().all() == [tombstone_key("c1")]
        assert session.get(AudienceMember, "c2") is None


def test_removals_are_written_together_and_a_customer_seen_again_starts_clean(
    db: Database,
) -> None:
    customers = ["d1", "d2", "d3"]
    with db.unit_of_work() as session:
        apply_audience_events(session, [segment_event(c, segments=["s1"]) for c in customers])
    with statements(db) as seen, db.unit_of_work() as session:
        apply_audience_events(
            session,
            [
                *[segment_event(c, removed=True) for c in customers],
                # d1 comes back in the same batch with only a policy: none of its old scores
                policy_event("d1"),
            ],
        )
    assert len([s for s in seen if s.startswith("DELETE FROM audience")]) == 1
    with db.sessions() as session:
        assert session.get(AudienceMember, "d2") is None
        assert session.get(AudienceMember, "d3") is None
        back = session.get(AudienceMember, "d1")
        assert back is not None and back.contact_policy is not None
        assert (back.rfm_segment, back.r_score, back.segments, back.scores_as_of) == (
            None,
            None,
            [],
            None,
        )


def test_merge_moves_orders_to_the_survivor(db: Database) -> None:
    with db.unit_of_work() as session:
        apply_orders(session, [order_event("o1", "old", NOW)])
        apply_audience_events(
            session,
            [
                segment_event("old"),
                ProfileMergedEvent(
                    source="profile",
                    key="new",
                    data=ProfileMergedPayload(
                        survivor_id="new", merged_ids=["old"], reason="mobile", merge_id="m1"
                    ),
                ),
            ],
        )
    with db.sessions() as session:
        assert session.get(CustomerOrder, "o1").customer_id == "new"  # type: ignore[union-attr]
        assert session.get(AudienceMember, "old") is None


def test_orders_newest_version_wins_and_first_purchase_is_seen_once(db: Database) -> None:
    later = NOW + timedelta(hours=1)
    with db.unit_of_work() as session:
        first = apply_orders(
            session,
            [
                order_event("o1", "c1", None, status="created"),
                order_event("o1", "c1", NOW, status="paid"),
            ],
        )
        stale = apply_orders(session, [order_event("o1", "c1", None, status="created")])
        refund = apply_orders(
            session,
            [
                order_event(
                    "o1",
                    "c1",
                    NOW,
                    amount="100",
                    status="partially_refunded",
                    refunded="30",
                    updated_at=later,
                )
            ],
        )
        second = apply_orders(session, [order_event("o2", "c1", later)])
    assert [t.kind for t in first] == ["first_purchase"]
    assert stale == [] and refund == [] and second == []
    with db.sessions() as session:
        order = session.get(CustomerOrder, "o1")
        assert order is not None
        assert order.status == "partially_refunded" and order.valid
        assert order.net_amount_e4 == 700_000


def test_receipts_are_recorded_once(db: Database) -> None:
    receipt = MessageReceiptRecordedEvent(
        source="gateway",
        key="c1",
        data=MessageReceipt(message_id="m1", customer_id="c1", status="delivered", at=NOW),
    )
    with db.unit_of_work() as session:
        apply_receipts(session, [receipt, receipt])
    with db.unit_of_work() as session:
        apply_receipts(session, [receipt])
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Receipt)) == 1


def test_orm_rows_held_by_the_session_see_what_the_projections_wrote(db: Database) -> None:
    """The projections write through Core: ORM rows the same transaction loaded before (an
    unmerge's policies, the triggers) read the new values, a deleted one is gone."""
    with db.unit_of_work() as session:
        apply_audience_events(session, [segment_event("c1"), segment_event("c2")])
    with db.unit_of_work() as session:
        held = session.get(AudienceMember, "c1")
        gone = session.get(AudienceMember, "c2")
        assert held is not None and held.province is None and gone is not None
        placed = order_event("o1", "c1", NOW)
        shipped = placed.data.model_copy(update={"shipping": Address(province="浙江省")})
        apply_orders(session, [placed.model_copy(update={"data": shipped})])
        assert held.province == "浙江省"
        apply_audience_events(
            session,
            [
                ProfileUpdatedEvent(
                    source="profile",
                    key="c1",
                    data=ProfileUpdatedPayload(customer_id="c1", tags=["t"], city="杭州市"),
                ),
                ProfileErasedEvent(
                    source="profile",
                    key="c2",
                    data=ProfileErasedPayload(customer_id="c2", erasure_id="e", requested_at=NOW),
                ),
            ],
        )
        assert (held.tags, held.province, held.city) == (["t"], None, "杭州市")
        assert session.get(AudienceMember, "c2") is None
        order = session.get(CustomerOrder, "o1")
        assert order is not None and order.customer_id == "c1"
    with db.sessions() as session:
        assert session.get(AudienceMember, "c2") is None
        row = session.get(AudienceMember, "c1")
        assert row is not None and (row.tags, row.city) == (["t"], "杭州市")
