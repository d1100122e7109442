"""What a profile shows: the derived views of its facets, the facts tag rules test, and
its data quality (pure, no I/O; masking is ``masking.py``)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.profile import input_quality
from services.profile.domain import (
    BASIC_FIELDS,
    CONTACT_FIELDS,
    OPERATOR,
    OPERATOR_SUBJECTIVE,
    Profile,
    iso,
)
from services.profile.masking import mask_value
from services.profile.transactions import ZERO, main_currency
from shared import regions

COMPLETENESS_FIELDS = ("name", "gender", "birthday", "mobiles", "emails", "address", "wechat")


def _top(counter: dict[str, int], n: int = 3) -> list[str]:
    return [k for k, _ in Counter(counter).most_common(n)]


def transactions_view(profile: Profile) -> dict[str, Any]:
    tx, ix = profile.transactions, profile.interactions
    currency = main_currency(tx)
    spent = Decimal(tx.spent.get(currency, "0")) if currency else ZERO
    count = tx.order_count
    aov = (spent / count).quantize(Decimal("0.01")) if count else None
    return {
        "order_count": count,
        "orders_placed": tx.orders_placed,
        "unpaid_orders": tx.unpaid_count,
        "cancelled_orders": tx.cancelled_count,
        "currency": currency,
        "total_spent": str(spent.quantize(Decimal("0.01"))),
        "spent_by_currency": dict(tx.spent),
        "average_order_value": str(aov) if aov is not None else None,
        "first_order_at": tx.first_order_at,
        "first_purchase_at": (profile.scores.snapshot or {}).get("first_order_at"),
        "last_order_at": tx.last_order_at,
        "refunds": {"count": tx.refund_count, "amount_by_currency": dict(tx.refunded)},
        "complaints": ix.complaints,
        "disputes": ix.disputes,
        "returns": ix.returns,
        "tickets": {"count": ix.tickets, "by_stage": dict(ix.tickets_by_stage)},
        "reviews": {
            "count": ix.reviews,
            "good": ix.good_reviews,
            "bad": ix.bad_reviews,
            "average_rating": round(ix.rating_sum / ix.rated, 2) if ix.rated else None,
        },
        "campaign_responses": ix.campaign_responses,
        "last_interaction_at": ix.last_interaction_at,
    }


def subjective_view(profile: Profile, settings: Any) -> dict[str, Any]:
    tx = profile.transactions
    currency = main_currency(tx)
    price_band = None
    if tx.units and currency and currency in tx.unit_spend:
        average = Decimal(tx.unit_spend[currency]) / tx.units
        if average < settings.price_band_low_below:
            price_band = "low"
        elif average >= settings.price_band_high_from:
            price_band = "high"
        else:
            price_band = "mid"
    share = tx.discounted_orders / tx.order_count if tx.order_count else None
    sensitivity = None
    if share is not None:
        if share >= settings.price_sensitivity_high_from:
            sensitivity = "high"
        elif share >= settings.price_sensitivity_medium_from:
            sensitivity = "medium"
        else:
            sensitivity = "low"
    facts = profile.facts
    return {
        "derived": {
            "top_categories": _top(tx.categories),
            "top_brands": _top(tx.brands),
            "price_band": price_band,
            "discount_share": round(share, 4) if share is not None else None,
            "price_sensitivity": sensitivity,
            "preferred_channel": next(iter(_top(tx.channels, 1)), None),
            "purchase_hours": [int(h) for h in _top(tx.hours)],
        },
        "entered": {name: facts.get(name) for name in OPERATOR_SUBJECTIVE},
    }


def facts_for_rules(profile: Profile, settings: Any) -> dict[str, Any]:
    """The flat facts tag rules test (see rules.py for the names)."""
    tx_view = transactions_view(profile)
    subjective = subjective_view(profile, settings)["derived"]
    scores = profile.scores.snapshot or {}
    province, city = profile.region()
    facts = profile.facts
    tx = profile.transactions
    return {
        "order_count": tx_view["order_count"],
        "orders_placed": tx_view["orders_placed"],
        "refund_count": tx_view["refunds"]["count"],
        "cancelled_count": tx_view["cancelled_orders"],
        "complaints": tx_view["complaints"],
        "tickets": tx_view["tickets"]["count"],
        "reviews": tx_view["reviews"]["count"],
        "good_reviews": tx_view["reviews"]["good"],
        "bad_reviews": tx_view["reviews"]["bad"],
        "average_rating": tx_view["reviews"]["average_rating"],
        "returns": tx_view["returns"],
        "disputes": tx_view["disputes"],
        "total_spent": tx_view["total_spent"] if tx_view["order_count"] else None,
        "average_order_value": tx_view["average_order_value"],
        "first_order_at": tx_view["first_order_at"],
        "last_order_at": tx_view["last_order_at"],
        "discount_share": subjective["discount_share"],
        "price_band": subjective["price_band"],
        "price_sensitivity": subjective["price_sensitivity"],
        "preferred_channel": subjective["preferred_channel"],
        "categories": list(tx.categories),
        "brands": list(tx.brands),
        "channels": list(tx.channels),
        "segments": list(profile.scores.segments),
        "r_score": scores.get("r_score"),
        "f_score": scores.get("f_score"),
        "m_score": scores.get("m_score"),
        "recency_days": scores.get("recency_days"),
        "frequency": scores.get("frequency"),
        "monetary": scores.get("monetary"),
        "rfm_segment": scores.get("rfm_segment"),
        "lifecycle_stage": scores.get("lifecycle_stage"),
        "value_quadrant": scores.get("value_quadrant"),
        "purchase_bucket": scores.get("purchase_bucket"),
        "province": province,
        "city": city,
        "gender": facts.get("gender"),
        "style": facts.get("style"),
        "contact_tolerance": facts.get("contact_tolerance"),
        "membership_interest": facts.get("membership_interest"),
        "points_interest": facts.get("points_interest"),
    }


def data_quality(profile: Profile, now: datetime, stale_after_days: int) -> dict[str, Any]:
    """Completeness, stale facts (not seen for ``stale_after_days``) and conflicts: values
    other sources disagree on, and an address whose city belongs to another province."""
    present = [
        name
        for name in COMPLETENESS_FIELDS
        if (profile.contacts[name] if name in CONTACT_FIELDS else profile.facts.get(name))
    ]
    cutoff = iso(now - timedelta(days=stale_after_days))
    stale = sorted(
        name
        for name, prov in profile.provenance.items()
        if prov.seen_at < cutoff and prov.source not in (OPERATOR, None)
    )
    for kind in CONTACT_FIELDS:
        entries = profile.contacts[kind]
        if entries and all(e.seen_at < cutoff and e.source != OPERATOR for e in entries.values()):
            stale.append(kind)
    conflicts = [
        {
            "field": name,
            # no value: seen only where it is no evidence (an unpaid or cancelled order)
            "reason": "sources_disagree" if prov.source is not None else "unconfirmed",
            "value": profile.facts.get(name),
            "source": prov.source,
            "alternatives": [
                {"value": a.value, "source": a.source, "seen_at": a.seen_at}
                for a in prov.alternatives
            ],
        }
        for name, prov in sorted(profile.provenance.items())
        if prov.alternatives
    ]
    province, city = profile.region()
    city_province = regions.city_outside_province(province, city)
    if city_province is not None:
        # kept as sent (ingest cannot tell which of the two names is wrong): reported here
        conflicts.append(
            {
                "field": "address",
                "reason": "city_not_in_province",
                "value": {"province": province, "city": city},
                "source": profile.provenance["address"].source,
                "alternatives": [],
                "city_province": city_province,
            }
        )
    return {
        "completeness": round(len(present) / len(COMPLETENESS_FIELDS), 3),
        "missing": [n for n in COMPLETENESS_FIELDS if n not in present],
        "stale_fields": stale,
        "conflicts": conflicts,
        "input_warnings": input_quality.summary(profile),
    }


def basic_view(profile: Profile, pii: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The basic facet and its provenance, personal data masked unless ``pii``."""

    def show(field: str, value: Any) -> Any:
        return value if pii else mask_value(field, value)

    basic: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    for name in BASIC_FIELDS:
        basic[name] = show(name, profile.facts.get(name))
        prov = profile.provenance.get(name)
        if prov is not None and prov.source is not None:
            provenance[name] = {"source": prov.source, "seen_at": prov.seen_at}
    for kind in CONTACT_FIELDS:
        entries = profile.contacts[kind]
        basic[kind] = [show(kind, v) for v in entries]
        provenance[kind] = [
            {
                "value": show(kind, v),
                "source": e.source,
                "seen_at": e.seen_at,
                "verified": e.verified,
            }
            for v, e in entries.items()
        ]
    for name in OPERATOR_SUBJECTIVE:
        prov = profile.provenance.get(name)
        if prov is not None:
            provenance[name] = {"source": prov.source, "seen_at": prov.seen_at}
    return basic, provenance
