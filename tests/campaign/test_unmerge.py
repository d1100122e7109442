"""profile.unmerged in campaign: the restored profile's orders and own events apply again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from services.campaign import service
from services.campaign.launch import launch
from services.campaign.models import AudienceMember, CustomerAlias, CustomerOrder
from services.campaign.report import build_report
from services.campaign.repository import Entries
from shared.db import Database
from shared.events import ContactPolicy, ProfilesUnmerged, ProfileUnmerged
from tests.campaign.factories import (
    NOW,
    consume,
    feed,
    fixed,
    make_campaign,
    merge_event,
    order_event,
    policy_event,
    segment_event,
    settings,
)
from tests.campaign.test_merges import all_entries


def unmerged(policies: dict[str, ContactPolicy] | None = None) -> ProfilesUnmerged:
    return ProfilesUnmerged(
        source="profile",
        key="a",
        data=ProfileUnmerged(
            merge_id="m1",
            survivor_id="a",
            restored_ids=["b"],
            customer_ids={"b": ["b"]},
            order_ids={"b": ["o2"]},
            contact_policies=policies or {},
        ),
    )


def owners(db: Database) -> dict[str, str]:
    with db.sessions() as session:
        return dict(
            session.execute(select(CustomerOrder.order_id, CustomerOrder.customer_id)).all()
        )


def test_unmerge_gives_the_orders_and_the_id_back(db: Database) -> None:
    consume(
        db,
        [
            segment_event("a"),
            segment_event("b"),
            order_event("o1", "a", NOW),
            order_event("o2", "b", NOW),
        ],
    )
    consume(db, [merge_event("a", ["b"])])
    assert owners(db) == {"o1": "a", "o2": "a"}

    consume(db, [unmerged()])
    consume(db, [unmerged()])  # delivered twice: the same
    assert owners(db) == {"o1": "a", "o2": "b"}
    with db.sessions() as session:
        assert session.scalars(select(CustomerAlias)).all() == []
    # b's own audience events apply again (they were ignored while it was an alias)
    consume(db, [segment_event("b", lifecycle="silent")])
    with db.sessions() as session:
        row = session.get(AudienceMember, "b")
        assert row is not None and row.lifecycle_stage == "silent"


def test_unmerge_gives_the_restored_id_its_contact_policy_back(db: Database) -> None:
    """Profile carries each restored profile's policy in the event: without it the restored
    id's audience row has no policy and a new campaign excludes it as no_consent."""
    consume(db, [segment_event("a"), segment_event("b"), policy_event("b", {"sms": True})])
    consume(db, [merge_event("a", ["b"])])
    with db.sessions() as session:
        assert session.get(AudienceMember, "b") is None  # b's state lives with a
    event = unmerged(
        {
            "b": ContactPolicy.model_validate(
                {
                    "customer_id": "b",
                    "channels": {"sms": {"consented": True}},
                    "updated_at": NOW,
                }
            )
        }
    )
    consume(db, [event])
    consume(db, [event])  # delivered twice: the same
    with db.sessions() as session:
        row = session.get(AudienceMember, "b")
        assert row is not None and row.contact_policy is not None
        assert row.contact_policy["channels"]["sms"]["consented"] is True
    # a newer policy held is not overwritten by a late unmerge
    newer = policy_event("b", {"sms": False}, updated_at=NOW + timedelta(days=1))
    consume(db, [newer, event])
    with db.sessions() as session:
        row = session.get(AudienceMember, "b")
        assert row is not None and row.contact_policy is not None
        assert row.contact_policy["channels"]["sms"]["consented"] is False


def test_unmerge_keys_the_entries_the_merge_moved_back(db: Database) -> None:
    """The restored id's sent entry and message are its own again, the survivor's entries
    count as before the merge."""
    campaign_id = make_campaign(db, conversion_window_days=7)
    feed(db, [e for c in ("a", "b") for e in (segment_event(c, segments=["s1"]), policy_event(c))])
    launch(db, campaign_id, settings(), now=fixed())
    before = all_entries(db)
    assert sorted((e[2], e[4]) for e in before) == [("a", "sent"), ("b", "sent")]
    consume(db, [merge_event("a", ["b"])])
    merged = all_entries(db)
    assert {e[2] for e in merged} == {"a"}  # the merge moved b's entry to a
    assert sum(1 for e in merged if e[5]) == 1  # one occasion: counted once

    consume(db, [unmerged()])
    assert all_entries(db) == before
    consume(db, [unmerged()])  # delivered twice: the same
    assert all_entries(db) == before
    with db.sessions() as session:
        report = build_report(session, service.get_campaign(session, campaign_id), NOW)
        contacts = Entries(session).recent_contacts(["a", "b"], NOW - timedelta(days=1))
    assert report.sent == 2
    assert {c: len(at) for c, at in contacts.items()} == {"a": 1, "b": 1}
