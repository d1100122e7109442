"""The pure rules of who is contacted, when, on which channel, saying what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from services.campaign.rules import Rule, compile_rule
from services.campaign.targeting import (
    MAX_CAP_PERIOD_DAYS,
    CapDefaults,
    compile_template,
    decide,
    frequency_limit,
    holdout_bucket,
    in_holdout,
    quiet_until,
    render,
    template_variables,
)

RULE = TypeAdapter(Rule)
NO_CAP = CapDefaults(None, 30)
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 Asia/Shanghai

ROW = {
    "customer_id": "c1",
    "r_score": 4,
    "f_score": 2,
    "m_score": 5,
    "monetary_e4": 1_234_500,
    "lifecycle_stage": "silent",
    "rfm_segment": "at_risk",
    "province": "浙江省",
    "city": "杭州市",
    "tags": ["good_review", "flash_sale"],
    "segments": ["s1"],
}


def matches(rule: dict, row: dict = ROW) -> bool:
    return compile_rule(RULE.validate_python(rule))(row)


def test_rule_language_all_any_not_and_comparisons() -> None:
    assert matches({"field": "r_score", "op": "gte", "value": 4})
    assert not matches({"field": "r_score", "op": "gt", "value": 4})
    assert matches({"field": "monetary", "op": "between", "value": ["100", "123.45"]})
    assert not matches({"field": "monetary", "op": "gt", "value": "123.45"})
    assert matches({"field": "lifecycle_stage", "op": "in", "value": ["silent", "sleeping"]})
    assert matches({"field": "tags", "op": "contains", "value": "good_review"})
    assert matches({"field": "tags", "op": "contains_all", "value": ["good_review", "flash_sale"]})
    assert not matches({"field": "tags", "op": "contains_any", "value": ["likes_new"]})
    assert matches(
        {
            "all": [
                {"field": "province", "op": "eq", "value": "浙江省"},
                {
                    "any": [
                        {"field": "f_score", "op": "eq", "value": 1},
                        {"field": "m_score", "op": "eq", "value": 5},
                    ]
                },
                {"not": {"field": "city", "op": "eq", "value": "宁波市"}},
            ]
        }
    )
    # a missing value never satisfies a comparison, not even ne / not_in
    unknown = {"customer_id": "c2", "tags": []}
    assert not matches({"field": "r_score", "op": "ne", "value": 1}, unknown)
    assert not matches({"field": "city", "op": "not_in", "value": ["x"]}, unknown)
    assert matches({"not": {"field": "r_score", "op": "eq", "value": 1}}, unknown)
    # money literals are compared in the row's 1/10,000 units, exactly
    assert matches({"field": "monetary", "op": "eq", "value": "123.45"})
    assert matches({"field": "monetary", "op": "in", "value": [123.45, "1"]})
    assert not matches({"field": "monetary", "op": "lt", "value": "123.4500"})


@pytest.mark.parametrize(
    "bad",
    [
        {"field": "nope", "op": "eq", "value": 1},
        {"field": "r_score", "op": "eq", "value": "high"},
        {"field": "tags", "op": "eq", "value": "x"},
        {"field": "r_score", "op": "contains", "value": 1},
        {"field": "r_score", "op": "between", "value": [1]},
        {"field": "monetary", "op": "gt", "value": "lots"},
        {"all": []},
        {"field": "city", "op": "eq", "value": ["杭州市"]},  # one value, not a list
        {"field": "tags", "op": "contains", "value": ["good_review"]},  # that is contains_any
        {"field": "monetary", "op": "gt", "value": "12.34567"},  # finer than monetary_e4
    ],
)
def test_invalid_rules_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        RULE.validate_python(bad)


def test_holdout_is_deterministic_and_close_to_its_share() -> None:
    assert holdout_bucket("cmp1", "c1") == holdout_bucket("cmp1", "c1")
    assert holdout_bucket("cmp1", "c1") != holdout_bucket("cmp2", "c1")
    held = sum(in_holdout("cmp1", f"c{i}", 0.2) for i in range(20_000))
    assert 0.19 < held / 20_000 < 0.21
    assert not any(in_holdout("cmp1", f"c{i}", 0.0) for i in range(1000))


def test_quiet_hours_defer_to_their_end_and_wrap_midnight() -> None:
    # 12:00 in Shanghai is inside 11:00-13:00: deferred until 13:00 local = 05:00 UTC
    assert quiet_until(NOW, {"start": "11:00", "end": "13:00", "timezone": "Asia/Shanghai"}) == (
        datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    )
    assert quiet_until(NOW, {"start": "13:00", "end": "14:00", "timezone": "Asia/Shanghai"}) is None
    # 22:00-08:00 wraps: at 23:30 local the end is 08:00 the next morning
    late = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
    assert quiet_until(late, {"start": "22:00", "end": "08:00", "timezone": "Asia/Shanghai"}) == (
        datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    )
    early = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 07:00 local next day
    assert quiet_until(early, {"start": "22:00", "end": "08:00"}) == datetime(
        2026, 11, 24, 0, 0, tzinfo=UTC
    )


def test_render_fills_customer_and_campaign_variables() -> None:
    text = render(
        "{{ city }}的{{rfm_segment}}客户, 券码 {{coupon}} {{missing}}", {**ROW, "coupon": "X1"}
    )
    assert text == "杭州市的at_risk客户, 券码 X1 "


def _decide(policy: dict | None, **kw: object) -> object:
    args: dict = {
        "campaign_id": "cmp",
        "customer_id": "c1",
        "erased": False,
        "policy": policy,
        "campaign_channels": ["wechat", "sms", "email"],
        "holdout_share": 0.0,
        "recent_contacts": [],
        "now": NOW,
        "cap_defaults": NO_CAP,
    }
    args.update(kw)
    return decide(**args)


def test_decision_order_and_reasons() -> None:
    consent = {"channels": {"sms": {"consented": True}, "email": {"consented": True}}}
    assert _decide(consent, erased=True).reason == "erased"
    assert _decide({**consent, "do_not_disturb": True}).reason == "do_not_disturb"
    assert (
        _decide(
            {"channels": {"wechat": {"consented": False}, "app_push": {"consented": True}}}
        ).reason
        == "no_consent"
    )
    assert _decide(None).reason == "no_consent"
    assert _decide(None, assume_consent=True).channels == ("wechat", "sms", "email")
    sent = _decide(consent)
    assert (sent.outcome, sent.channels, sent.not_before) == ("sent", ("sms", "email"), None)
    # the cap counts contacts (by any campaign) inside the rolling period only
    capped = {**consent, "max_contacts": 2, "period_days": 7}
    two_recent = [NOW - timedelta(days=1), NOW - timedelta(days=6)]
    assert _decide(capped, recent_contacts=two_recent).reason == "frequency_cap"
    one_old = [NOW - timedelta(days=1), NOW - timedelta(days=8)]
    assert _decide(capped, recent_contacts=one_old).outcome == "sent"
    assert (
        _decide(consent, recent_contacts=two_recent, cap_defaults=CapDefaults(2, 30)).reason
        == "frequency_cap"
    )
    # holdout is drawn among the eligible only
    assert _decide(consent, holdout_share=0.9, customer_id="c1", campaign_id="x").outcome in (
        "sent",
        "holdout",
    )
    held = next(f"c{i}" for i in range(100) if in_holdout("cmp", f"c{i}", 0.5))
    assert _decide(consent, holdout_share=0.5, customer_id=held).outcome == "holdout"
    assert _decide(None, holdout_share=0.5, customer_id=held).reason == "no_consent"
    quiet = {**consent, "quiet_hours": {"start": "11:00", "end": "13:00"}}
    deferred = _decide(quiet)
    assert deferred.outcome == "sent"
    assert deferred.not_before == datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "template",
    [
        "plain text",
        "{{city}}",
        "a {{ city }} b {{coupon}}{{missing}} c",
        "{{x}}{{x}} {{ rfm_segment}}",
        "{{ city | 亲爱的顾客 }}, {{ missing|朋友}} {{ empty | - }} {{coupon | none}}",
    ],
)
def test_compiled_template_renders_like_render(template: str) -> None:
    variables = {**ROW, "coupon": "X1", "x": 3, "empty": ""}
    assert compile_template(template)(variables) == render(template, variables)
    without_city = {**variables, "city": None}
    assert compile_template(template)(without_city) == render(template, without_city)


def test_a_placeholder_fallback_stands_in_for_a_missing_or_empty_value() -> None:
    template = "{{ city | 亲爱的顾客 }}您好, 券 {{ coupon|无 }} {{ name }}"
    assert render(template, {"city": "杭州市", "coupon": "X1"}) == "杭州市您好, 券 X1 "
    assert render(template, {"city": None, "coupon": ""}) == "亲爱的顾客您好, 券 无 "
    assert template_variables(template) == {"city", "coupon", "name"}


def test_a_policy_period_longer_than_the_history_read_is_capped() -> None:
    """The launch reads MAX_CAP_PERIOD_DAYS of contact history; a longer policy period is
    capped to it rather than silently judged on fewer days than it says."""
    policy = {"max_contacts": 3, "period_days": 1000}
    assert frequency_limit(policy, NO_CAP) == (3, MAX_CAP_PERIOD_DAYS)
    assert frequency_limit({"max_contacts": 3, "period_days": 7}, NO_CAP) == (3, 7)
    assert frequency_limit(None, CapDefaults(5, 5000)) == (5, MAX_CAP_PERIOD_DAYS)
