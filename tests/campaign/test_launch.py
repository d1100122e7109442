"""Launch: audience snapshot, exclusions with reasons, quiet hours, holdout, idempotency."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.campaign import launch as launch_module
from services.campaign import service
from services.campaign.launch import launch
from services.campaign.targeting import in_holdout
from shared.db import Database
from shared.errors import Conflict
from shared.events import ProfileErasedEvent, ProfileErasedPayload
from tests.campaign.factories import (
    NOW,
    entries,
    feed,
    fixed,
    make_campaign,
    outbox,
    policy_event,
    segment_event,
    settings,
)


def test_exclusions_deferral_and_messages(db: Database) -> None:
    consent = {"sms": True}
    feed(
        db,
        [
            *[
                segment_event(c, segments=["s1"])
                for c in ("a1", "a2", "a3", "a4", "a5", "a6", "a7")
            ],
            segment_event("a8", segments=["other"]),
            segment_event("a6b", segments=["prior"]),
            policy_event("a1", {"email": True, "sms": True}),
            policy_event("a2", consent),
            ProfileErasedEvent(
                source="profile",
                key="a2",
                data=ProfileErasedPayload(customer_id="a2", erasure_id="e", requested_at=NOW),
            ),
            policy_event("a3", consent, do_not_disturb=True),
            policy_event("a5", {"app_push": True, "sms": False}),
            policy_event("a6", consent, max_contacts=1, period_days=30),
            policy_event(
                "a7",
                {"email": True},
                quiet_hours={"start": "11:00", "end": "13:00", "timezone": "Asia/Shanghai"},
            ),
        ],
    )
    cfg = settings()
    # another campaign contacted a6 three days ago: over its cap of 1 per 30 days
    feed(db, [segment_event("a6", segments=["s1", "prior"])])
    prior = make_campaign(
        db, audience={"rule": {"field": "segments", "op": "contains", "value": "prior"}}
    )
    launch(db, prior, cfg, now=fixed(NOW - timedelta(days=3)))
    assert [e.data.customer_id for e in outbox(db)] == ["a6"]

    campaign_id = make_campaign(db)
    outcome = launch(db, campaign_id, cfg, now=fixed())
    got = entries(db, campaign_id)
    # a2 was erased: no audience row is left of it to enter (a trigger that still names
    # it excludes it as "erased": see test_erasure.py)
    assert {c: (e.outcome, e.reason) for c, e in got.items()} == {
        "a1": ("sent", None),
        "a3": ("excluded", "do_not_disturb"),
        "a4": ("excluded", "no_consent"),
        "a5": ("excluded", "no_consent"),
        "a6": ("excluded", "frequency_cap"),
        "a7": ("sent", None),
    }
    assert outcome.tally.targeted == 6 and outcome.tally.sent == 2 and outcome.tally.deferred == 1
    messages = {e.data.customer_id: e for e in outbox(db)[1:]}
    assert set(messages) == {"a1", "a7"}
    a1, a7 = messages["a1"].data, messages["a7"].data
    assert (a1.channel, a1.fallback_channels, a1.not_before) == ("sms", ["email"], None)
    assert a1.content == " hello C10" and a1.variables["coupon"] == "C10"
    assert a1.campaign_id == campaign_id and a1.message_id == got["a1"].message_id
    assert messages["a1"].key == "a1"
    assert (a7.channel, a7.fallback_channels) == ("email", [])
    assert a7.not_before == datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 13:00 Shanghai


def test_holdout_is_the_hash_group_and_gets_no_message(db: Database) -> None:
    customers = [f"h{i:03d}" for i in range(60)]
    feed(db, [e for c in customers for e in (segment_event(c, segments=["s1"]), policy_event(c))])
    campaign_id = make_campaign(db, holdout_share=0.2)
    launch(db, campaign_id, settings(launch_chunk_size=25), now=fixed())
    got = entries(db, campaign_id)
    expected = {c for c in customers if in_holdout(campaign_id, c, 0.2)}
    assert 0 < len(expected) < 30
    assert {c for c, e in got.items() if e.outcome == "holdout"} == expected
    sent = {e.data.customer_id for e in outbox(db)}
    assert sent == set(customers) - expected


class Crash(Exception):
    pass


def test_crash_mid_launch_then_relaunch_sends_each_customer_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers = [f"k{i:02d}" for i in range(10)]
    feed(db, [e for c in customers for e in (segment_event(c, segments=["s1"]), policy_event(c))])
    campaign_id = make_campaign(db)
    cfg = settings(launch_chunk_size=3)

    # 1) the process dies after two chunks were committed
    def die(chunks: int) -> None:
        if chunks == 2:
            raise Crash

    with pytest.raises(Crash):
        launch(db, campaign_id, cfg, now=fixed(), after_chunk=die)
    assert len(outbox(db)) == 6

    # 2) the relaunch dies inside the next chunk's transaction (rolled back: nothing of it)
    real = launch_module.add_raw_to_outbox

    def fail(session: Any, rows: Any) -> None:
        real(session, rows)
        raise Crash

    monkeypatch.setattr(launch_module, "add_raw_to_outbox", fail)
    with pytest.raises(Crash):
        launch(db, campaign_id, cfg, now=fixed())
    assert len(outbox(db)) == 6 and len(entries(db, campaign_id)) == 6
    monkeypatch.setattr(launch_module, "add_raw_to_outbox", real)

    # 3) the next relaunch resumes and finishes; 4) another one changes nothing
    resumed = launch(db, campaign_id, cfg, now=fixed())
    assert resumed.resumed and resumed.tally.sent == 4
    again = launch(db, campaign_id, cfg, now=fixed())
    assert again.already_launched and again.tally.sent == 0
    sent = Counter(e.data.customer_id for e in outbox(db))
    assert sent == Counter(customers)
    assert len({e.data.message_id for e in outbox(db)}) == 10
    assert len(entries(db, campaign_id)) == 10


def test_status_machine_only_allows_valid_transitions(db: Database) -> None:
    campaign_id = make_campaign(db)
    with db.unit_of_work() as session:
        with pytest.raises(Conflict):
            service.change_status(session, campaign_id, "completed")
        assert service.change_status(session, campaign_id, "scheduled").status == "scheduled"
        assert service.change_status(session, campaign_id, "draft").status == "draft"
    launch(db, campaign_id, settings(), now=fixed())
    with db.unit_of_work() as session:
        with pytest.raises(Conflict):
            service.change_status(session, campaign_id, "draft")
        assert service.change_status(session, campaign_id, "cancelled").status == "cancelled"
    with pytest.raises(Conflict):
        launch(db, campaign_id, settings(), now=fixed())
    with db.unit_of_work() as session, pytest.raises(Conflict):
        service.change_status(session, campaign_id, "scheduled")


def test_interleaved_launches_never_send_twice(db: Database) -> None:
    customers = [f"j{i:02d}" for i in range(9)]
    feed(db, [e for c in customers for e in (segment_event(c, segments=["s1"]), policy_event(c))])
    campaign_id = make_campaign(db)
    cfg = settings(launch_chunk_size=3)
    inner: list[Any] = []

    def second_launch(chunks: int) -> None:
        # a second caller launches while the first is between two chunks
        if chunks == 1:
            inner.append(launch(db, campaign_id, cfg, now=fixed()))

    outer = launch(db, campaign_id, cfg, now=fixed(), after_chunk=second_launch)
    assert inner[0].resumed and inner[0].tally.sent == 6
    assert outer.tally.sent == 3  # the chunks the other launch did were skipped
    assert Counter(e.data.customer_id for e in outbox(db)) == Counter(customers)
