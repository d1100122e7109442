"""The batch handler's rules against both databases (no broker): order versions, facets,
segment snapshots, interactions, provenance."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.profile import reads, tags
from services.profile.config import Settings
from services.profile.domain import iso
from shared.db import Database
from tests.profile.profile_factories import (
    T0,
    apply,
    customer,
    interaction,
    order,
    search,
    segment_changed,
)


def view(db: Database, settings: Settings, customer_id: str, pii: bool = True) -> dict[str, Any]:
    with db.sessions() as session:
        return reads.view(reads.load(session, customer_id), pii, settings)


def test_order_versions_count_distinct_valid_orders(db: Database, settings: Settings) -> None:
    apply(
        db,
        settings,
        order("c1", "o1", "created", minutes=0),
        order("c1", "o1", "paid", minutes=5),
        order("c1", "o2", "paid", "100.00", minutes=1, created_minutes=60),
    )
    # a duplicate and an out-of-order older version change nothing
    apply(db, settings, order("c1", "o1", "paid", minutes=5), order("c1", "o1", "created"))
    tx = view(db, settings, "c1")["transactions"]
    assert tx["order_count"] == 2
    assert tx["orders_placed"] == 2
    assert tx["total_spent"] == "299.00"
    assert tx["average_order_value"] == "149.50"
    assert tx["first_order_at"].startswith("2026-11-01T02:00")
    assert tx["last_order_at"].startswith("2026-11-01T03:00")
    # a refund takes the later order back out; first/last recomputed
    apply(db, settings, order("c1", "o2", "refunded", "100.00", minutes=90, created_minutes=60))
    tx = view(db, settings, "c1")["transactions"]
    assert tx["order_count"] == 1
    assert tx["total_spent"] == "199.00"
    assert tx["last_order_at"].startswith("2026-11-01T02:00")
    assert tx["refunds"]["count"] == 1
    assert tx["refunds"]["amount_by_currency"] == {"CNY": "100.00"}


def test_versions_within_one_batch_newest_wins(db: Database, settings: Settings) -> None:
    apply(
        db,
        settings,
        order("c1", "o1", "paid", minutes=5),
        order("c1", "o1", "cancelled", minutes=10),
        order("c1", "o1", "created", minutes=0),
    )
    tx = view(db, settings, "c1")["transactions"]
    assert tx["order_count"] == 0
    assert tx["cancelled_orders"] == 1


def test_segment_change_sets_scores_and_memberships(db: Database, settings: Settings) -> None:
    apply(
        db,
        settings,
        order("c1", "o1"),
        segment_changed("c1", minutes=2, rfm_segment="champions", segments=["vip"]),
        segment_changed("c1", minutes=1, rfm_segment="stale"),  # older: ignored
    )
    body = view(db, settings, "c1")
    assert body["scores"]["rfm_segment"] == "champions"
    assert body["scores"]["lifecycle_stage"] == "new"
    assert body["scores"]["r_score"] == 5
    assert body["scores"]["policy_version"] == 1
    assert body["segments"] == ["vip"]
    with db.sessions() as session:
        found = search(session, settings, segment="vip", lifecycle_stage="new")
    assert [r.profile_id for r in found] == ["c1"]


def test_basic_facet_with_provenance_and_chinese_address(db: Database, settings: Settings) -> None:
    apply(
        db,
        settings,
        order(
            "c1",
            "o1",
            minutes=0,
            buyer={"name": "张三", "mobile": "+86 138 0013 8000"},
            shipping={
                "province": "浙江省",
                "city": "杭州市",
                "district": "西湖区",
                "address": "文三路 100 号",
            },
        ),
        customer("c1", minutes=-60, name="张三丰", emails=["ZS@Example.com"], gender="male"),
    )
    body = view(db, settings, "c1")
    basic = body["basic"]
    # the order is newer than the customer record: its name wins, the other is a conflict
    assert basic["name"] == "张三"
    assert body["provenance"]["name"]["source"] == "order:tmall"
    assert basic["mobiles"] == ["+8613800138000"]
    assert basic["emails"] == ["zs@example.com"]
    assert basic["address"]["city"] == "杭州市"
    conflicts = body["data_quality"]["conflicts"]
    assert conflicts[0]["field"] == "name"
    assert conflicts[0]["alternatives"][0]["value"] == "张三丰"
    assert 0 < body["data_quality"]["completeness"] < 1
    assert "birthday" in body["data_quality"]["missing"]
    # old facts are stale by the configured age
    assert "name" in body["data_quality"]["stale_fields"] or settings.stale_after_days > 30


def test_interactions_and_subjective_facet(db: Database, settings: Settings) -> None:
    apply(
        db,
        settings,
        order(
            "c1",
            "o1",
            discount_amount="10.00",
            items=[
                {
                    "sku": "A",
                    "category": "scarves",
                    "brand": "Acme",
                    "unit_price": "99.50",
                    "quantity": 2,
                }
            ],
        ),
        order(
            "c1",
            "o2",
            created_minutes=30,
            items=[
                {
                    "sku": "B",
                    "category": "scarves",
                    "brand": "Acme",
                    "unit_price": "600",
                    "quantity": 1,
                }
            ],
        ),
        interaction("c1", "i1", "review", rating=5),
        interaction("c1", "i1", "review", rating=5),  # same interaction again: counted once
        interaction("c1", "i2", "complaint"),
        interaction("c1", "i3", "service_ticket", stage="after_sale"),
    )
    body = view(db, settings, "c1")
    derived = body["subjective"]["derived"]
    assert derived["top_categories"] == ["scarves"]
    assert derived["top_brands"] == ["Acme"]
    assert derived["discount_share"] == 0.5
    assert derived["price_sensitivity"] == "high"
    assert derived["price_band"] == "mid"  # (199 + 600) / 3 units
    assert derived["preferred_channel"] == "tmall"
    assert derived["purchase_hours"] == [10]  # 02:00 UTC is 10:00 in Shanghai
    tx = body["transactions"]
    assert tx["reviews"] == {"count": 1, "good": 1, "bad": 0, "average_rating": 5.0}
    assert tx["complaints"] == 1
    assert tx["tickets"] == {"count": 1, "by_stage": {"after_sale": 1}}


def test_replay_in_any_batching_gives_the_same_profile(db: Database, settings: Settings) -> None:
    events = [
        order("c1", "o1", "created", buyer={"name": "张三", "mobile": "13800138000"}),
        customer("c1", minutes=3, name="张三", emails=["a@b.cn"]),
        order("c1", "o1", "paid", minutes=5),
        order("c1", "o2", "paid", "50.00", minutes=7, created_minutes=7),
        interaction("c1", "i1", "complaint"),
        segment_changed("c1", minutes=8, rfm_segment="loyal"),
        order("c1", "o2", "refunded", "50.00", minutes=9, created_minutes=7),
    ]
    apply(db, settings, *events)
    together = view(db, settings, "c1")
    # the same facts again, one by one and in reverse: nothing changes (idempotent, ordered
    # by the data's own time, not by arrival)
    for event in reversed(events):
        apply(db, settings, event)
    again = view(db, settings, "c1")
    for key in ("basic", "transactions", "scores", "subjective", "provenance"):
        assert again[key] == together[key], key
    assert together["transactions"]["order_count"] == 1
    assert together["transactions"]["complaints"] == 1


def test_segment_changes_alone_update_scores_without_the_document(
    db: Database, settings: Settings
) -> None:
    apply(db, settings, order("c1", "o1", buyer={"name": "张三"}))
    apply(
        db,
        settings,
        segment_changed(
            "c1", minutes=5, rfm_segment="champions", lifecycle_stage="active", segments=["vip"]
        ),
    )
    apply(db, settings, segment_changed("c1", minutes=1, rfm_segment="stale"))  # older
    body = view(db, settings, "c1")
    assert body["scores"]["rfm_segment"] == "champions"
    assert body["segments"] == ["vip"]
    assert body["basic"]["name"] == "张三"
    assert body["transactions"]["order_count"] == 1
    with db.sessions() as session:
        found = search(
            session, settings, segment="vip", lifecycle_stage="active", rfm_segment="champions"
        )
    assert [r.profile_id for r in found] == ["c1"]
    # the customer left scoring (erased or merged upstream): scores and memberships go
    apply(db, settings, segment_changed("c1", minutes=9, removed=True))
    body = view(db, settings, "c1")
    assert body["scores"]["rfm_segment"] is None and body["segments"] == []
    # a segment change for a customer never seen creates the profile
    apply(db, settings, segment_changed("c2", minutes=9, rfm_segment="new"))
    assert view(db, settings, "c2")["scores"]["rfm_segment"] == "new"


def test_tag_rules_on_scores_follow_segment_changes(db: Database, settings: Settings) -> None:
    apply(db, settings, order("c1", "o1"), order("c2", "o2"))
    with db.unit_of_work() as session:
        tags.create_tag_rule(
            session,
            "active-champion",
            {
                "all": [
                    {"field": "lifecycle_stage", "op": "eq", "value": "active"},
                    {"field": "segments", "op": "contains", "value": "vip"},
                ]
            },
            None,
            settings,
        )
    apply(
        db, settings, segment_changed("c1", minutes=5, lifecycle_stage="active", segments=["vip"])
    )
    assert view(db, settings, "c1")["tags"] == ["active-champion"]
    assert view(db, settings, "c2")["tags"] == []
    apply(
        db, settings, segment_changed("c1", minutes=6, lifecycle_stage="silent", segments=["vip"])
    )
    assert view(db, settings, "c1")["tags"] == []
    assert view(db, settings, "c1")["scores"]["lifecycle_stage"] == "silent"


def test_first_order_at_is_placement_of_first_purchase_first_purchase_at_is_segments(
    db: Database, settings: Settings
) -> None:
    placed, paid = T0 + timedelta(minutes=10), T0 + timedelta(minutes=70)
    apply(
        db,
        settings,
        # placed earlier but never paid: no purchase, so not the first order either
        order("c1", "o0", "created"),
        order("c1", "o1", "paid", created_minutes=10, minutes=70, paid_at=paid),
    )
    tx = view(db, settings, "c1")["transactions"]
    assert tx["first_order_at"] == iso(placed)
    assert tx["first_purchase_at"] is None  # not scored by segment yet
    apply(db, settings, segment_changed("c1", first_order_at=paid))
    tx = view(db, settings, "c1")["transactions"]
    assert tx["first_order_at"] == iso(placed)
    assert tx["first_purchase_at"] == iso(paid)


def test_an_address_naming_a_city_of_another_province_is_a_conflict(
    db: Database, settings: Settings
) -> None:
    apply(
        db,
        settings,
        order(
            "c1", "o1", shipping={"province": "浙江省", "city": "南京市", "address": "中山路 1 号"}
        ),
        order("c2", "o2", shipping={"province": "浙江省", "city": "杭州市"}),
    )
    expected = {
        "field": "address",
        "reason": "city_not_in_province",
        "value": {"province": "浙江省", "city": "南京市"},
        "source": "order:tmall:shipping",
        "alternatives": [],
        "city_province": "江苏省",
    }
    assert view(db, settings, "c1")["data_quality"]["conflicts"] == [expected]
    # region names are no personal data: the masked view reports the same
    assert view(db, settings, "c1", pii=False)["data_quality"]["conflicts"] == [expected]
    assert view(db, settings, "c2")["data_quality"]["conflicts"] == []
    # a newer record from another source corrects the region: what remains is the older
    # value it replaced, a conflict between sources
    apply(
        db,
        settings,
        customer("c1", minutes=10, address={"province": "江苏省", "city": "南京市"}),
    )
    conflicts = view(db, settings, "c1")["data_quality"]["conflicts"]
    assert [(c["field"], c["reason"]) for c in conflicts] == [("address", "sources_disagree")]
    assert conflicts[0]["alternatives"][0]["value"]["province"] == "浙江省"


def test_the_address_comes_from_valid_purchases_others_are_alternatives(
    db: Database, settings: Settings
) -> None:
    home = {"province": "浙江省", "city": "杭州市", "address": "文三路100号"}
    gift = {"province": "广东省", "city": "深圳市", "address": "深南大道1号"}
    office = {"province": "上海市", "city": "上海市", "address": "南京东路1号"}
    # an address seen only on an unpaid order is not the customer's address
    apply(db, settings, order("a1", "o0", "created", minutes=0, shipping=office))
    body = view(db, settings, "a1")
    assert body["basic"]["address"] is None
    assert body["data_quality"]["conflicts"] == [
        {
            "field": "address",
            "reason": "unconfirmed",
            "value": None,
            "source": None,
            "alternatives": [
                {"value": office, "source": "order:tmall:shipping", "seen_at": body_seen(body)}
            ],
        }
    ]
    assert "address" not in body["data_quality"]["stale_fields"]
    # a valid purchase sets it; a newer unpaid or cancelled order does not replace it
    apply(
        db,
        settings,
        order("a1", "o1", "paid", minutes=10, shipping=home),
        order("a1", "o2", "created", minutes=20, shipping=gift),
        order("a1", "o3", "cancelled", minutes=30, shipping=gift),
    )
    body = view(db, settings, "a1")
    assert body["basic"]["address"]["city"] == "杭州市"
    (conflict,) = body["data_quality"]["conflicts"]
    assert conflict["reason"] == "sources_disagree"
    assert [a["value"]["city"] for a in conflict["alternatives"]] == ["深圳市", "上海市"]
    # the newest valid purchase wins
    apply(db, settings, order("a1", "o4", "completed", minutes=40, shipping=gift))
    assert view(db, settings, "a1")["basic"]["address"]["city"] == "深圳市"
    # an unpaid order's address becomes the customer's when that order is paid, even if the
    # paid version carries no shipping of its own
    apply(db, settings, order("a2", "p1", "created", minutes=0, shipping=home))
    assert view(db, settings, "a2")["basic"]["address"] is None
    apply(db, settings, order("a2", "p1", "paid", minutes=5))
    body = view(db, settings, "a2")
    assert body["basic"]["address"]["city"] == "杭州市"
    assert body["data_quality"]["conflicts"] == []


def body_seen(body: dict[str, Any]) -> str:
    return str(body["data_quality"]["conflicts"][0]["alternatives"][0]["seen_at"])


def test_fields_ingest_dropped_are_reported_in_data_quality(
    db: Database, settings: Settings
) -> None:
    warned = [{"field": "buyer.mobile", "code": "phone.invalid"}]
    apply(
        db,
        settings,
        order("w1", "o1", minutes=0, data_warnings=warned),
        order("w1", "o1", minutes=0, data_warnings=warned),  # redelivered: counted once
        order(
            "w1",
            "o2",
            minutes=5,
            data_warnings=[*warned, {"field": "total_amount", "code": "money.items_mismatch"}],
        ),
    )
    quality = view(db, settings, "w1")["data_quality"]
    assert quality["input_warnings"] == [
        {"field": "buyer.mobile", "code": "phone.invalid", "orders": 2},
        {"field": "total_amount", "code": "money.items_mismatch", "orders": 1},
    ]
    # a newer version of an order without the problem clears it; an older one changes nothing
    apply(db, settings, order("w1", "o2", "shipped", minutes=10), order("w1", "o1", "created"))
    assert view(db, settings, "w1")["data_quality"]["input_warnings"] == [
        {"field": "buyer.mobile", "code": "phone.invalid", "orders": 1}
    ]


def test_fields_dropped_from_customer_records_are_reported_once_per_source(
    db: Database, settings: Settings
) -> None:
    dropped = [{"field": "gender", "code": "gender.unknown"}]
    record = customer("w2", name="王五", data_warnings=dropped)
    apply(db, settings, record, record)
    assert view(db, settings, "w2")["data_quality"]["input_warnings"] == [
        {"field": "gender", "code": "gender.unknown", "orders": 1}
    ]
    apply(db, settings, customer("w2", minutes=5, name="王五"))  # fixed at the source
    assert view(db, settings, "w2")["data_quality"]["input_warnings"] == []
