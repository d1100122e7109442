"""Identity resolution: shared verified contacts merge; the false-merge safeguards hold."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from services.profile import editing, identity, reads, tags
from services.profile.config import Settings
from shared.db import Database
from shared.errors import NotFound
from tests.conftest import outbox_events
from tests.profile.profile_factories import (
    apply,
    customer,
    order,
    search,
    segment_changed,
)
from tests.profile.test_profile_normalize import FIVE_SPELLINGS


def profile(db: Database, settings: Settings, customer_id: str) -> dict[str, Any]:
    with db.sessions() as session:
        return reads.view(reads.load(session, customer_id), True, settings)


def outbox_types(db: Database) -> list[str]:
    return [event.type for event in outbox_events(db)]


def test_five_spellings_of_one_verified_mobile_resolve_to_one_profile(
    db: Database, settings: Settings
) -> None:
    for i, spelling in enumerate(FIVE_SPELLINGS):
        apply(
            db,
            settings,
            customer(f"acct-{i}", minutes=i, name="张三", mobiles=[spelling], verified=[spelling]),
            order(f"acct-{i}", f"o-{i}", created_minutes=i),
        )
    survivor = profile(db, settings, "acct-3")
    # survivor rule: first seen earliest (acct-0's record is the oldest)
    assert survivor["customer_id"] == "acct-0"
    assert sorted(survivor["merged_ids"]) == ["acct-1", "acct-2", "acct-3", "acct-4"]
    assert survivor["basic"]["mobiles"] == ["+8613800138000"]
    assert survivor["transactions"]["order_count"] == 5
    for i in range(5):
        assert profile(db, settings, f"acct-{i}")["customer_id"] == "acct-0"
    with db.sessions() as session:
        found = search(session, settings, mobile="138 0013 8000")
        merges = session.execute(text("SELECT count(*) FROM merges")).scalar_one()
    assert [r.profile_id for r in found] == ["acct-0"]
    assert merges >= 1
    assert "profile.merged" in outbox_types(db)


def test_unverified_order_contacts_never_merge(db: Database, settings: Settings) -> None:
    apply(
        db,
        settings,
        order("a", "o1", buyer={"name": "张三", "mobile": "13800138000"}),
        order("b", "o2", buyer={"name": "张三", "mobile": "13800138000"}),
    )
    assert profile(db, settings, "a")["customer_id"] == "a"
    assert profile(db, settings, "b")["customer_id"] == "b"


def test_household_with_different_names_is_not_merged(db: Database, settings: Settings) -> None:
    apply(
        db,
        settings,
        customer("mum", name="王芳", mobiles=["13800138000"], verified=["13800138000"]),
        customer(
            "son", minutes=1, name="李明", mobiles=["+8613800138000"], verified=["+8613800138000"]
        ),
    )
    assert profile(db, settings, "mum")["customer_id"] == "mum"
    assert profile(db, settings, "son")["customer_id"] == "son"
    with db.sessions() as session:
        reasons = (
            session.execute(text("SELECT detail FROM audit_log WHERE action = 'merge_refused'"))
            .scalars()
            .all()
        )
    assert reasons and all("name_conflict" in r for r in reasons)


def test_shop_assistant_number_shared_by_many_merges_nothing(
    db: Database, settings: Settings
) -> None:
    # three unrelated buyers whose records all carry the assistant's (verified) number
    apply(
        db,
        settings,
        customer("x1", mobiles=["13900139000"], verified=["13900139000"]),
        order("x2", "o2", buyer={"mobile": "13900139000"}),
        order("x3", "o3", buyer={"mobile": "13900139000"}),
    )
    apply(
        db, settings, customer("x2", minutes=5, mobiles=["13900139000"], verified=["13900139000"])
    )
    for cid in ("x1", "x2", "x3"):
        assert profile(db, settings, cid)["customer_id"] == cid
    with db.sessions() as session:
        refused = (
            session.execute(text("SELECT detail FROM audit_log WHERE action = 'merge_refused'"))
            .scalars()
            .all()
        )
    assert any("shared_contact" in r for r in refused)


def test_verified_email_merges_and_scores_of_merged_ids_are_ignored(
    db: Database, settings: Settings
) -> None:
    apply(
        db,
        settings,
        customer("jd_1", minutes=0, emails=["Li@Example.com"], verified=["li@example.com"]),
        segment_changed("jd_1", rfm_segment="loyal"),
        customer("tb_1", minutes=9, emails=["li@example.com"], verified=["li@example.com"]),
    )
    apply(db, settings, segment_changed("tb_1", minutes=10, rfm_segment="stale"))
    merged = profile(db, settings, "tb_1")
    assert merged["customer_id"] == "jd_1"
    assert merged["scores"]["rfm_segment"] == "loyal"


def test_operator_verification_merges_and_the_survivor_rule_holds(
    db: Database, settings: Settings
) -> None:
    apply(
        db,
        settings,
        order("late", "o1", minutes=60, buyer={"name": "陈静", "mobile": "13700137000"}),
        order("early", "o2", minutes=0, buyer={"name": "陈静", "mobile": "137 0013 7000"}),
    )
    for cid in ("late", "early"):
        with db.unit_of_work() as session:
            editing.patch_profile(
                session,
                cid,
                {"mobiles": ["13700137000"], "verified": ["13700137000"]},
                "operator-key",
                settings,
            )
    merged = profile(db, settings, "late")
    assert merged["customer_id"] == "early"  # first seen earliest survives
    assert merged["merged_ids"] == ["late"]
    assert merged["transactions"]["order_count"] == 2
    assert merged["provenance"]["mobiles"][0]["verified"] is True


_TAG_LOG = {
    "sqlite": [
        "CREATE TABLE tag_log (op TEXT, profile_id TEXT, tag TEXT, source TEXT)",
        "CREATE TRIGGER tag_deleted AFTER DELETE ON profile_tags BEGIN INSERT INTO tag_log "
        "VALUES ('delete', OLD.profile_id, OLD.tag, OLD.source); END",
        "CREATE TRIGGER tag_inserted AFTER INSERT ON profile_tags BEGIN INSERT INTO tag_log "
        "VALUES ('insert', NEW.profile_id, NEW.tag, NEW.source); END",
    ],
    "postgresql": [
        "CREATE TABLE tag_log (op TEXT, profile_id TEXT, tag TEXT, source TEXT)",
        "CREATE FUNCTION log_tag() RETURNS trigger AS $$ BEGIN "
        "IF TG_OP = 'DELETE' THEN "
        "INSERT INTO tag_log VALUES ('delete', OLD.profile_id, OLD.tag, OLD.source); "
        "RETURN OLD; END IF; "
        "INSERT INTO tag_log VALUES ('insert', NEW.profile_id, NEW.tag, NEW.source); "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER tag_log AFTER INSERT OR DELETE ON profile_tags "
        "FOR EACH ROW EXECUTE FUNCTION log_tag()",
    ],
}


def test_a_merge_writes_only_the_tag_rows_that_change(db: Database, settings: Settings) -> None:
    apply(db, settings, order("a", "o1"), order("b", "o2", created_minutes=5))
    with db.unit_of_work() as session:
        tags.create_tag_rule(
            session, "buyer", {"field": "order_count", "op": "gte", "value": 1}, None, settings
        )
        tags.add_tags(session, "a", ["vip"], "key", settings)
        tags.add_tags(session, "b", ["vip", "gift"], "key", settings)
    with db.unit_of_work() as session:
        for statement in _TAG_LOG[session.get_bind().dialect.name]:
            session.execute(text(statement))
    with db.unit_of_work() as session:
        identity.merge_profiles(session, "a", ["b"], "same person", "key", settings)
    with db.sessions() as session:
        log = set(session.execute(text("SELECT op, profile_id, tag, source FROM tag_log")).all())
        rows = set(
            session.execute(
                text("SELECT profile_id, tag, source FROM profile_tags ORDER BY tag")
            ).all()
        )
    # the survivor's vip (manual) and buyer (rule) rows stay as they were
    assert log == {
        ("delete", "b", "vip", "manual"),
        ("delete", "b", "gift", "manual"),
        ("delete", "b", "buyer", "rule"),
        ("insert", "a", "gift", "manual"),
    }
    assert rows == {("a", "buyer", "rule"), ("a", "gift", "manual"), ("a", "vip", "manual")}
    assert profile(db, settings, "b")["tags"] == ["buyer", "gift", "vip"]


def test_the_transaction_and_the_hot_path_read_the_same_profile(
    db: Database, settings: Settings
) -> None:
    apply(db, settings, order("a", "o1"), order("b", "o2", created_minutes=5))
    with db.unit_of_work() as session:
        identity.merge_profiles(session, "a", ["b"], "same person", "key", settings)
        # inside the transaction the merge is visible before its commit
        assert reads.load(session, "b").profile_id == "a"
        assert reads.load(session, "a").profile.merged_ids == ["b"]
    for customer_id in ("a", "b"):
        with db.sessions() as session:
            loaded = reads.load(session, customer_id)
        read = reads.read(db.engine, customer_id)
        assert (read.profile_id, read.profile) == (loaded.profile_id, loaded.profile)
    with db.sessions() as session, pytest.raises(NotFound):
        reads.load(session, "nobody")
    with pytest.raises(NotFound):
        reads.read(db.engine, "nobody")
