"""Profile merges: contacts, entries, orders and later events follow the survivor, once."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from services.campaign import service
from services.campaign.launch import launch
from services.campaign.merges import counted_entries
from services.campaign.models import AudienceMember, CustomerAlias, CustomerOrder, Entry
from services.campaign.report import build_report
from services.campaign.repository import Entries
from services.campaign.targeting import in_holdout
from shared.db import Database
from tests.campaign.factories import (
    NOW,
    consume,
    entries,
    feed,
    fixed,
    make_campaign,
    merge_event,
    order_event,
    policy_event,
    segment_event,
    settings,
)

DAY = timedelta(days=1)


def all_entries(db: Database) -> list[tuple[Any, ...]]:
    with db.sessions() as session:
        rows = session.scalars(select(Entry).order_by(Entry.id)).all()
    return [
        (e.id, e.campaign_id, e.customer_id, e.entry_no, e.outcome, e.counted, e.message_id)
        for e in rows
    ]


def test_a_merge_moves_past_contacts_so_the_cap_counts_them_once(db: Database) -> None:
    feed(
        db,
        [
            segment_event("old", segments=["prior"]),
            policy_event("old"),
            segment_event("new", segments=["s1"]),
            # the survivor tolerates two contacts per 30 days
            policy_event("new", max_contacts=2, period_days=30),
        ],
    )
    for days_ago in (3, 2):  # two other campaigns contacted the merged id
        prior = make_campaign(
            db, audience={"rule": {"field": "segments", "op": "contains", "value": "prior"}}
        )
        launch(db, prior, settings(), now=fixed(NOW - days_ago * DAY))
    consume(db, [merge_event("new", ["old"])])
    moved = all_entries(db)
    assert [(e[2], e[3], e[4]) for e in moved] == [("new", 0, "sent"), ("new", 0, "sent")]

    # delivered again, in a later batch: nothing changes
    consume(db, [merge_event("new", ["old"])])
    assert all_entries(db) == moved

    campaign_id = make_campaign(db)
    launch(db, campaign_id, settings(), now=fixed())
    entry = entries(db, campaign_id)["new"]
    assert (entry.outcome, entry.reason) == ("excluded", "frequency_cap")


def _pick(campaign_id: str, held_out: bool, taken: set[str]) -> str:
    """A customer id that the campaign's hash puts in (or out of) its holdout."""
    for i in range(1000):
        customer_id = f"p{i:03d}"
        if customer_id not in taken and in_holdout(campaign_id, customer_id, 0.5) == held_out:
            taken.add(customer_id)
            return customer_id
    raise AssertionError("no such id")


def test_a_merged_customer_counts_once_and_never_in_both_groups(db: Database) -> None:
    campaign_id = make_campaign(db, holdout_share=0.5, conversion_window_days=7)
    taken: set[str] = set()
    # (survivor held out?, merged id held out?) for four pairs
    pairs = {
        name: (_pick(campaign_id, survivor, taken), _pick(campaign_id, merged, taken))
        for name, (survivor, merged) in {
            "contacted_merged": (True, False),
            "contacted_survivor": (False, True),
            "both_held_out": (True, True),
            "both_contacted": (False, False),
        }.items()
    }
    ids = [c for pair in pairs.values() for c in pair]
    feed(db, [e for c in ids for e in (segment_event(c, segments=["s1"]), policy_event(c))])
    launch(db, campaign_id, settings(), now=fixed())
    assert len(entries(db, campaign_id)) == 8
    merged_contacted = pairs["contacted_merged"][1]
    merged_held_out = pairs["both_held_out"][1]
    consume(
        db,
        [
            # the merged ids bought within the window, before the merges reached campaign
            order_event("o-treated", merged_contacted, NOW + DAY, "100.00"),
            order_event("o-control", merged_held_out, NOW + 2 * DAY, "40.00"),
        ],
    )

    merges = [merge_event(s, [m], f"m-{name}") for name, (s, m) in pairs.items()]
    consume(db, merges)  # late: long after the launch
    with db.sessions() as session:
        report = build_report(session, service.get_campaign(session, campaign_id), NOW + 8 * DAY)
        contacts = Entries(session).recent_contacts([s for s, _ in pairs.values()], NOW - DAY)
    assert (report.targeted, report.sent, report.holdout, report.excluded) == (4, 3, 1, {})
    # contacted under either id: treatment; held out under both: control
    assert (report.treatment.customers, report.treatment.converted) == (3, 1)
    assert report.treatment.revenue == "100.00"
    assert (report.control.customers, report.control.converted) == (1, 1)
    assert report.control.revenue == "40.00"
    counted = {(e[2], e[4]) for e in all_entries(db) if e[5]}
    assert counted == {
        (pairs["contacted_merged"][0], "sent"),
        (pairs["contacted_survivor"][0], "sent"),
        (pairs["both_held_out"][0], "holdout"),
        (pairs["both_contacted"][0], "sent"),
    }
    # each message sent is still a contact of the survivor (the frequency cap counts both)
    assert {c: len(at) for c, at in contacts.items()} == {
        pairs["contacted_merged"][0]: 1,
        pairs["contacted_survivor"][0]: 1,
        pairs["both_contacted"][0]: 2,
    }

    before = all_entries(db)
    consume(db, merges)  # redelivered
    assert all_entries(db) == before
    with db.sessions() as session:
        again = build_report(session, service.get_campaign(session, campaign_id), NOW + 8 * DAY)
    assert again.model_dump(exclude={"as_of"}) == report.model_dump(exclude={"as_of"})


def test_a_late_merge_follows_a_later_one_and_later_events_follow_the_survivor(
    db: Database,
) -> None:
    feed(db, [e for c in ("a", "b", "c") for e in (segment_event(c, segments=["s1"]),)])
    feed(db, [policy_event(c) for c in ("a", "b", "c")])
    campaign_id = make_campaign(db)
    launch(db, campaign_id, settings(), now=fixed())
    consume(db, [order_event("o-a", "a", NOW + DAY)])
    # b merged into c reaches campaign before the earlier merge of a into b
    consume(db, [merge_event("c", ["b"], "m2")])
    consume(db, [merge_event("b", ["a"], "m1")])

    with db.sessions() as session:
        aliases = {r.merged_id: r.survivor_id for r in session.scalars(select(CustomerAlias))}
        assert aliases == {"a": "c", "b": "c"}
        assert session.get(CustomerOrder, "o-a").customer_id == "c"  # type: ignore[union-attr]
        assert session.get(AudienceMember, "a") is None
    # c's own entry keeps its number; b's and then a's follow; one of the three counts (the
    # earliest: all were contacted in the same launch)
    got = [(e[2], e[3], e[5]) for e in all_entries(db)]
    assert got == [("c", 2, True), ("c", 1, False), ("c", 0, False)]

    # what is still published under a merged id, delivered afterwards, follows the survivor
    consume(
        db,
        [
            policy_event("a", {"email": True}),
            segment_event("b", segments=["s1"], as_of=NOW + DAY),
            order_event("o-a2", "a", NOW + 2 * DAY),
            order_event("o-a", "a", NOW + DAY, status="completed", updated_at=NOW + 3 * DAY),
        ],
    )
    with db.sessions() as session:
        assert session.get(AudienceMember, "a") is None
        assert session.get(AudienceMember, "b") is None
        owners = {o.order_id: o.customer_id for o in session.scalars(select(CustomerOrder))}
    assert owners == {"o-a": "c", "o-a2": "c"}
    with db.sessions() as session:
        report = build_report(session, service.get_campaign(session, campaign_id), NOW + 8 * DAY)
    assert (report.targeted, report.treatment.customers, report.treatment.converted) == (1, 1, 1)


def _entry(
    id_: int, day: float, outcome: str = "sent", run_no: int = 0, key: str | None = None
) -> Any:
    at = datetime(2026, 11, 1) + timedelta(days=day)
    return SimpleNamespace(id=id_, entered_at=at, outcome=outcome, run_no=run_no, trigger_key=key)


def test_which_entries_of_a_merged_customer_count() -> None:
    # no re-entry: one occasion; the contacted entry counts even though a holdout came first
    one = [_entry(1, 0, "holdout"), _entry(2, 5, "sent"), _entry(3, 9, "excluded")]
    assert counted_entries(one, reentry_allowed=False, cooldown=timedelta(0)) == {2}
    # held out under every id: the earliest holdout; only excluded: the earliest exclusion
    held = [_entry(1, 1, "excluded"), _entry(2, 2, "holdout"), _entry(3, 0, "holdout")]
    assert counted_entries(held, reentry_allowed=False, cooldown=timedelta(0)) == {3}
    # recurring runs: one occasion per run
    runs = [_entry(1, 0, run_no=1), _entry(2, 0.1, run_no=1), _entry(3, 1, run_no=2)]
    assert counted_entries(runs, reentry_allowed=True, cooldown=timedelta(0)) == {1, 3}
    # re-entry with a 2-day cooldown from the occasion's first entry: days 0 and 1 are one
    # occasion, day 2 a new one (as the launch would have let one customer in)
    cooled = [_entry(1, 0), _entry(2, 1), _entry(3, 2)]
    assert counted_entries(cooled, reentry_allowed=True, cooldown=timedelta(days=2)) == {1, 3}
    # the same trigger occurrence under two ids is one occasion
    same = [_entry(1, 0, key="first_purchase:o1"), _entry(2, 3, key="first_purchase:o1")]
    assert counted_entries(same, reentry_allowed=True, cooldown=timedelta(0)) == {1}
