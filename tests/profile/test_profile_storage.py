"""The storage codec: rows stored before the typed model decode unchanged (no migration),
and what is written back is byte for byte what was read."""

from __future__ import annotations

import orjson

from services.profile.domain import (
    Alternative,
    ContactEntry,
    Interactions,
    OrderRecord,
    Profile,
    Provenance,
    Scores,
    Transactions,
)
from services.profile.readable import readable_order
from services.profile.storage import (
    SCORE_KEYS,
    decode_contribution,
    decode_profile,
    decode_scores,
    decode_snapshot,
    encode_contribution,
    encode_profile,
    encode_scores,
    encode_snapshot,
)

#: a profiles.doc as the dict-based profile wrote it (services/profile/domain.py before
#: the typed model), with an alternative, a locked contact kind, an unpaid order's address
#: and input warnings
STORED_DOC = (
    '{"f":{"name":"张叁","address":{"province":"浙江省","city":"杭州市"}},"contacts":{"mobiles":'
    '{"+8613800138000":{"source":"customer:crm","seen_at":"2026-01-03T00:00:00.000000+00:00",'
    '"verified":true}},"phones":{},"emails":{}},"prov":{"name":{"source":"customer:crm",'
    '"seen_at":"2026-01-03T00:00:00.000000+00:00","alt":[{"value":"张三","source":"order:tmall",'
    '"seen_at":"2026-01-02T00:00:00.000000+00:00"}]},"address":{"source":"order:tmall:shipping",'
    '"seen_at":"2026-01-02T00:00:00.000000+00:00","alt":[{"value":{"province":"江苏省","city":'
    '"南京市"},"source":"order:tmall:shipping","seen_at":"2026-01-04T00:00:00.000000+00:00"}]}},'
    '"locked":["emails"],"tx":{"orders_placed":1,"order_count":1,"spent":{"CNY":"299.00"},'
    '"refunded":{},"refund_count":0,"cancelled_count":0,"unpaid_count":0,"first":'
    '"2026-01-02T02:00:00.000000+00:00","last":"2026-01-02T02:00:00.000000+00:00","discounted":1,'
    '"categories":{"shoes":1},"brands":{"B":1},"channels":{"tmall":1},"hours":{"10":1},"units":2,'
    '"unit_spend":{"CNY":"299.00"}},"ix":{"reviews":1,"good_reviews":0,"bad_reviews":0,'
    '"rating_sum":0,"rated":0,"complaints":0,"tickets":1,"tickets_by_stage":{"open":1},'
    '"returns":0,"disputes":0,"campaign_responses":0,"last_at":"2026-01-05T00:00:00.000000+00:00"},'
    '"manual_tags":["vip"],"rule_tags":[],"policy":{"channels":{"sms":{"consented":true,"at":'
    '"2026-01-01T00:00:00.000000+00:00","source":"k"}},"do_not_disturb":false,"quiet_hours":null,'
    '"max_contacts":null,"updated_at":"2026-01-01T00:00:00.000000+00:00"},"first_seen":'
    '"2026-01-01T00:00:00.000000+00:00","merged_ids":[],"unpaid_addr":{"o2":{"value":{"province":'
    '"江苏省","city":"南京市"},"source":"order:tmall:shipping"}},"input_warn":{"o1":'
    '["mobile|mobile.invalid"]}}'
)
STORED_SCORES = '{"scores":{"rfm_segment":"new"},"scores_key":"k","segments":["vip"]}'
STORED_PURCHASE = (
    '{"valid":true,"status":"paid","cur":"CNY","net":"299.00","refunded":"0","created":'
    '"2026-01-02T02:00:00.000000+00:00","cats":["shoes"],"brands":["B"],"channel":"tmall",'
    '"hour":10,"disc":true,"units":2,"spend":"299.00"}'
)
STORED_UNPAID = (
    '{"valid":false,"status":"created","cur":"CNY","net":"0","refunded":"0","created":'
    '"2026-01-02T02:00:00.000000+00:00"}'
)


def test_a_stored_profile_decodes_under_readable_names_and_encodes_back_unchanged() -> None:
    scores = decode_scores(orjson.loads(STORED_SCORES))
    profile = decode_profile(orjson.loads(STORED_DOC), scores)
    assert profile.facts["name"] == "张叁"
    assert profile.provenance["name"].source == "customer:crm"
    assert [a.value for a in profile.provenance["name"].alternatives] == ["张三"]
    assert profile.contacts["mobiles"]["+8613800138000"].verified
    assert profile.locked_contacts == ["emails"]
    assert profile.transactions.first_order_at == "2026-01-02T02:00:00.000000+00:00"
    assert profile.transactions.discounted_orders == 1
    assert profile.interactions.last_interaction_at == "2026-01-05T00:00:00.000000+00:00"
    assert profile.unpaid_addresses["o2"]["source"] == "order:tmall:shipping"
    assert profile.input_warnings == {"o1": ["mobile|mobile.invalid"]}
    assert profile.scores == Scores({"rfm_segment": "new"}, "k", ["vip"])
    assert profile.region() == ("浙江省", "杭州市")
    # written back byte for byte: the scores part stays out of the document
    assert orjson.dumps(encode_profile(profile)).decode() == STORED_DOC
    assert orjson.dumps(encode_scores(profile.scores)).decode() == STORED_SCORES


def test_a_document_stored_before_unpaid_addresses_and_warnings_decodes() -> None:
    stored = orjson.loads(STORED_DOC)
    del stored["unpaid_addr"], stored["input_warn"]
    profile = decode_profile(stored, decode_scores(None))
    assert profile.unpaid_addresses == {} and profile.input_warnings == {}
    assert profile.scores == Scores()
    assert encode_profile(profile) == stored


def test_a_new_profile_is_stored_in_the_same_shape_without_its_scores_part() -> None:
    profile = Profile(first_seen="2026-01-01T00:00:00.000000+00:00")
    profile.scores = Scores({"rfm_segment": "new"}, "k", ["vip"])
    stored = encode_profile(profile)
    assert not set(SCORE_KEYS) & set(stored)
    expected_keys = set(orjson.loads(STORED_DOC)) - {"unpaid_addr", "input_warn"}
    assert set(stored) == expected_keys
    assert decode_profile(stored, profile.scores) == profile


def test_a_merge_snapshot_keeps_the_scores_part_in_the_document() -> None:
    profile = decode_profile(orjson.loads(STORED_DOC), decode_scores(orjson.loads(STORED_SCORES)))
    snapshot = encode_snapshot(profile)
    assert {k: snapshot[k] for k in SCORE_KEYS} == orjson.loads(STORED_SCORES)
    assert decode_snapshot(orjson.loads(orjson.dumps(snapshot))) == profile


def test_stored_contributions_decode_and_encode_back_unchanged() -> None:
    for raw in (STORED_PURCHASE, STORED_UNPAID):
        contribution = decode_contribution(orjson.loads(raw))
        assert orjson.dumps(encode_contribution(contribution)).decode() == raw
    purchase = decode_contribution(orjson.loads(STORED_PURCHASE))
    assert purchase.valid_purchase and purchase.purchase is not None
    assert purchase.purchase.categories == ["shoes"] and purchase.purchase.purchase_hour == 10
    assert not decode_contribution(orjson.loads(STORED_UNPAID)).valid_purchase


def test_the_export_shows_an_order_under_readable_names_only() -> None:
    storage_keys = {"valid", "cur", "net", "refunded", "created", "cats", "hour", "disc", "spend"}
    paid = OrderRecord("o1", "c1", "v", decode_contribution(orjson.loads(STORED_PURCHASE)))
    shown = readable_order(paid)
    assert not set(shown) & storage_keys
    assert shown == {
        "order_id": "o1",
        "customer_id": "c1",
        "version": "v",
        "valid_purchase": True,
        "status": "paid",
        "currency": "CNY",
        "net_amount": "299.00",
        "refunded_amount": "0",
        "created_at": "2026-01-02T02:00:00.000000+00:00",
        "categories": ["shoes"],
        "brands": ["B"],
        "channel": "tmall",
        "purchase_hour": 10,
        "discounted": True,
        "units": 2,
        "item_spend": "299.00",
    }
    unpaid = OrderRecord("o2", "c1", "v", decode_contribution(orjson.loads(STORED_UNPAID)))
    assert set(readable_order(unpaid)) == set(list(shown)[:9])


def test_every_counter_comes_back_in_its_own_field() -> None:
    """Decoding passes the fields by position (it is cheaper): each one distinct here, so
    a field read into its neighbour's place fails."""
    tx = Transactions(
        1, 2, {"CNY": "3"}, {"CNY": "4"}, 5, 6, 7, "8", "9", 10, {"a": 11}, {"b": 12},
        {"c": 13}, {"14": 14}, 15, {"CNY": "16"},
    )  # fmt: skip
    ix = Interactions(1, 2, 3, 4, 5, 6, 7, {"open": 8}, 9, 10, 11, "12")
    profile = Profile(
        "first",
        {"name": "n"},
        {"name": Provenance("s", "t", [Alternative("v", "s2", "t2")])},
        {"mobiles": {"m": ContactEntry("s", "t", True)}, "phones": {}, "emails": {}},
        ["mobiles"],
        tx,
        ix,
        Scores(),
        ["manual"],
        ["rule"],
        {"do_not_disturb": True},
        ["merged"],
        {"o1": {"value": {"city": "c"}, "source": "s"}},
        {"o1": ["f|c"]},
    )
    stored = orjson.loads(orjson.dumps(encode_profile(profile)))
    assert stored["tx"]["first"] == "8" and stored["tx"]["discounted"] == 10
    assert stored["ix"]["last_at"] == "12" and stored["locked"] == ["mobiles"]
    assert decode_profile(stored, Scores()) == profile
