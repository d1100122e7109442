"""The profile document and the pure rules that maintain it (no I/O).

A profile is kept as one JSON document: facts with their provenance, counters of the
transaction and interaction facets, the latest scores, tags and the contact policy.
Every timestamp inside is an ISO 8601 UTC string of fixed shape, so strings compare
in time order.

Provenance: every fact knows its ``source`` and when it was last seen (``seen_at``). Per
fact the newest observation wins; an operator's edit (source ``operator``) wins over any
derived observation until the operator changes it again. A losing value from another
source is kept as an alternative: that is what the data-quality block reports as a
conflict.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from services.profile import input_quality
from services.profile.normalize import mask_email, mask_handle, mask_name, mask_phone
from shared import regions
from shared.events import Interaction, Order, OrderStatus, ScoreSnapshot, SegmentChanged

OPERATOR = "operator"

#: Single-valued facts of the basic facet (``address`` is an object).
BASIC_FIELDS = (
    "name",
    "gender",
    "birthday",
    "company",
    "title",
    "industry",
    "wechat",
    "qq",
    "timezone",
    "address",
)
#: Multi-valued contacts of the basic facet, each value with its own provenance.
CONTACT_FIELDS = ("mobiles", "phones", "emails")
#: The subjective facts only operators enter.
OPERATOR_SUBJECTIVE = ("style", "contact_tolerance", "membership_interest", "points_interest")
COMPLETENESS_FIELDS = ("name", "gender", "birthday", "mobiles", "emails", "address", "wechat")
ADDRESS_KEYS = ("province", "city", "district", "address", "postal_code")
MAX_ALTERNATIVES = 3

ZERO = Decimal("0")


def iso_times(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with each datetime value as :func:`iso` (UTC, with its offset)."""
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}


def iso(value: datetime) -> str:
    """A fixed-shape UTC ISO string (naive datetimes are taken as UTC)."""
    offset = value.utcoffset()
    if offset is None:
        value = value.replace(tzinfo=UTC)
    elif offset:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def empty_transactions() -> dict[str, Any]:
    return {
        "orders_placed": 0,
        "order_count": 0,
        "spent": {},
        "refunded": {},
        "refund_count": 0,
        "cancelled_count": 0,
        "unpaid_count": 0,
        "first": None,
        "last": None,
        "discounted": 0,
        "categories": {},
        "brands": {},
        "channels": {},
        "hours": {},
        "units": 0,
        "unit_spend": {},
    }


def empty_interactions() -> dict[str, Any]:
    return {
        "reviews": 0,
        "good_reviews": 0,
        "bad_reviews": 0,
        "rating_sum": 0,
        "rated": 0,
        "complaints": 0,
        "tickets": 0,
        "tickets_by_stage": {},
        "returns": 0,
        "disputes": 0,
        "campaign_responses": 0,
        "last_at": None,
    }


def new_doc(first_seen: str) -> dict[str, Any]:
    """A profile with nothing known yet, first seen at ``first_seen``."""
    return {
        "f": {},
        "contacts": {k: {} for k in CONTACT_FIELDS},
        "prov": {},
        "locked": [],
        "tx": empty_transactions(),
        "ix": empty_interactions(),
        "scores": None,
        "scores_key": None,
        "segments": [],
        "manual_tags": [],
        "rule_tags": [],
        "policy": None,
        "first_seen": first_seen,
        "merged_ids": [],
    }


# --------------------------------------------------------------------------- facts


def observe(doc: dict[str, Any], field: str, value: Any, source: str, seen_at: str) -> bool:
    """Record one observation of a single-valued fact; True if the profile's value changed."""
    if value is None or value == "" or value == {}:
        return False
    operator = source == OPERATOR
    facts, provs = doc["f"], doc["prov"]
    current = facts.get(field)
    prov = provs.get(field)
    if prov is None or current is None:
        facts[field] = value
        # (values seen only as alternatives before, e.g. an unpaid order's address, stay so)
        kept = [a for a in (prov or {}).get("alt", []) if a["value"] != value]
        provs[field] = {"source": source, "seen_at": seen_at, "alt": kept}
        return True
    if value == current:
        if seen_at > prov["seen_at"] and (operator or prov["source"] != OPERATOR):
            prov["seen_at"] = seen_at
            prov["source"] = source
        return False
    loses = (prov["source"] == OPERATOR and not operator) or (
        not operator and seen_at < prov["seen_at"]
    )
    if loses:
        if source != prov["source"]:
            _add_alternative(prov, value, source, seen_at)
        return False
    if source != prov["source"]:
        _add_alternative(prov, current, prov["source"], prov["seen_at"])
    prov["alt"] = [a for a in prov["alt"] if a["value"] != value]
    facts[field] = value
    prov["source"], prov["seen_at"] = source, seen_at
    return True


def observe_alternative(
    doc: dict[str, Any], field: str, value: Any, source: str, seen_at: str
) -> None:
    """Record a value seen where it is no evidence of the current one (the shipping address
    of an unpaid or cancelled order): kept among the field's alternatives, never its value.
    A field known only this way has alternatives and no value (source ``None``)."""
    if value is None or value == "" or value == {} or doc["f"].get(field) == value:
        return
    prov = doc["prov"].setdefault(field, {"source": None, "seen_at": "", "alt": []})
    _add_alternative(prov, value, source, seen_at)


def _add_alternative(prov: dict[str, Any], value: Any, source: str, seen_at: str) -> None:
    alts = [a for a in prov["alt"] if a["value"] != value]
    alts.append({"value": value, "source": source, "seen_at": seen_at})
    alts.sort(key=lambda a: a["seen_at"], reverse=True)
    prov["alt"] = alts[:MAX_ALTERNATIVES]


def clear_fact(doc: dict[str, Any], field: str) -> None:
    doc["f"].pop(field, None)
    doc["prov"].pop(field, None)


def observe_contact(
    doc: dict[str, Any], kind: str, value: str, source: str, seen_at: str, verified: bool = False
) -> bool:
    """Record a mobile / phone / e-mail; True if it is new or newly verified."""
    if kind in doc["locked"] and source != OPERATOR:
        return False
    entries = doc["contacts"][kind]
    entry = entries.get(value)
    if entry is None:
        entries[value] = {"source": source, "seen_at": seen_at, "verified": verified}
        return True
    changed = verified and not entry["verified"]
    if seen_at > entry["seen_at"]:
        entry["seen_at"], entry["source"] = seen_at, source
    entry["verified"] = entry["verified"] or verified
    return changed


def replace_contacts(
    doc: dict[str, Any], kind: str, values: list[str], verified: set[str], seen_at: str
) -> None:
    """An operator's list of one kind of contact: it replaces the derived one and wins."""
    old = doc["contacts"][kind]
    doc["contacts"][kind] = {
        v: {
            "source": OPERATOR,
            "seen_at": seen_at,
            "verified": v in verified or old.get(v, {}).get("verified", False),
        }
        for v in values
    }
    if kind not in doc["locked"]:
        doc["locked"].append(kind)


def verified_contacts(doc: dict[str, Any], kind: str) -> list[str]:
    return [v for v, e in doc["contacts"][kind].items() if e["verified"]]


def address_of(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    cleaned = {k: value.get(k) for k in ADDRESS_KEYS if value.get(k)}
    return cleaned or None


def normalised_address(value: dict[str, Any]) -> dict[str, Any]:
    """An address with its region normalised as ingest normalises it (``shared.regions``):
    what operators type must be found by the same search and reports as consumed data."""
    region_of = regions.normalise_region(
        value.get("province"),
        value.get("city"),
        district=value.get("district"),
        address=value.get("address"),
    )
    return {**value, **region_of._asdict()}


def region(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    address = doc["f"].get("address") or {}
    return address.get("province"), address.get("city")


# --------------------------------------------------------------------------- transactions


def order_contribution(order: Order, timezone: str) -> dict[str, Any]:
    """What one order version adds to the transaction facet (pure)."""
    status = order.status
    refunded = ZERO
    if status in (OrderStatus.refunded, OrderStatus.partially_refunded):
        refunded = order.refunded_amount or (
            order.total_amount if status is OrderStatus.refunded else ZERO
        )
    contribution: dict[str, Any] = {
        "valid": order.is_valid_purchase,
        "status": status.value,
        "cur": order.currency,
        "net": str(order.net_amount),
        "refunded": str(refunded),
        "created": iso(order.created_at),
    }
    if order.is_valid_purchase:
        local = order.created_at.astimezone(_zone(timezone))
        units, spend = 0, ZERO
        discounted = bool(order.discount_amount) or bool(order.promotion)
        cats: set[str] = set()
        brands: set[str] = set()
        for item in order.items:
            if item.category:
                cats.add(item.category)
            if item.brand:
                brands.add(item.brand)
            if item.unit_price is not None:
                units += item.quantity
                spend += item.unit_price * item.quantity
                if item.list_price is not None and item.unit_price < item.list_price:
                    discounted = True
        contribution.update(
            cats=sorted(cats),
            brands=sorted(brands),
            channel=order.channel,
            hour=local.hour,
            disc=discounted,
            units=units,
            spend=str(spend),
        )
    return contribution


def _bump(counter: dict[str, Any], key: str, delta: int) -> None:
    value = counter.get(key, 0) + delta
    if value:
        counter[key] = value
    else:
        counter.pop(key, None)


def _add_money(counter: dict[str, str], currency: str, amount: str, sign: int) -> None:
    if amount in ("0", "0.00"):
        return
    total = Decimal(counter.get(currency, "0")) + sign * Decimal(amount)
    if total:
        counter[currency] = str(total)
    else:
        counter.pop(currency, None)


def apply_contribution(tx: dict[str, Any], c: dict[str, Any], sign: int) -> bool:
    """Add (+1) or take back (-1) one order's contribution. True when first/last order
    must be recomputed from all orders (a removed order was the first or the last)."""
    tx["orders_placed"] += sign
    status = c["status"]
    if status in ("refunded", "partially_refunded"):
        tx["refund_count"] += sign
        _add_money(tx["refunded"], c["cur"], c["refunded"], sign)
    elif status == "cancelled":
        tx["cancelled_count"] += sign
    elif status == "created":
        tx["unpaid_count"] += sign
    if not c["valid"]:
        return False
    tx["order_count"] += sign
    _add_money(tx["spent"], c["cur"], c["net"], sign)
    for cat in c["cats"]:
        _bump(tx["categories"], cat, sign)
    for brand in c["brands"]:
        _bump(tx["brands"], brand, sign)
    if c["channel"]:
        _bump(tx["channels"], c["channel"], sign)
    _bump(tx["hours"], str(c["hour"]), sign)
    if c["disc"]:
        tx["discounted"] += sign
    tx["units"] += sign * c["units"]
    _add_money(tx["unit_spend"], c["cur"], c["spend"], sign)
    created = c["created"]
    if sign > 0:
        if tx["first"] is None or created < tx["first"]:
            tx["first"] = created
        if tx["last"] is None or created > tx["last"]:
            tx["last"] = created
        return False
    return created in (tx["first"], tx["last"])


def rebuild_transactions(contributions: list[dict[str, Any]]) -> dict[str, Any]:
    tx = empty_transactions()
    for c in contributions:
        apply_contribution(tx, c, +1)
    return tx


def apply_interaction(ix: dict[str, Any], interaction: Interaction) -> None:
    kind = interaction.kind.value
    if kind == "review":
        ix["reviews"] += 1
        if interaction.rating is not None:
            ix["rating_sum"] += interaction.rating
            ix["rated"] += 1
            if interaction.rating >= 4:
                ix["good_reviews"] += 1
            elif interaction.rating <= 2:
                ix["bad_reviews"] += 1
    elif kind == "service_ticket":
        ix["tickets"] += 1
        stage = interaction.stage or "unknown"
        ix["tickets_by_stage"][stage] = ix["tickets_by_stage"].get(stage, 0) + 1
    elif kind == "return":
        ix["returns"] += 1
    elif kind == "complaint":
        ix["complaints"] += 1
    elif kind == "dispute":
        ix["disputes"] += 1
    elif kind == "campaign_response":
        ix["campaign_responses"] += 1
    at = iso(interaction.occurred_at)
    if ix["last_at"] is None or at > ix["last_at"]:
        ix["last_at"] = at


def add_interactions(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, int):
            into[key] = into.get(key, 0) + value
    for stage, count in other["tickets_by_stage"].items():
        into["tickets_by_stage"][stage] = into["tickets_by_stage"].get(stage, 0) + count
    if other["last_at"] and (into["last_at"] is None or other["last_at"] > into["last_at"]):
        into["last_at"] = other["last_at"]


def main_currency(tx: dict[str, Any]) -> str | None:
    if not tx["spent"]:
        return None
    return max(tx["spent"], key=lambda c: Decimal(tx["spent"][c]))


# --------------------------------------------------------------------------- scores


SCORE_FIELDS = tuple(ScoreSnapshot.model_fields)


def apply_segment_change(doc: dict[str, Any], change: SegmentChanged) -> bool:
    """Take the scores of a segment change unless an equal or newer one was applied."""
    as_of = iso(change.as_of)
    key = f"{as_of}|{change.policy_version:012d}"
    if doc["scores_key"] is not None and key < doc["scores_key"]:
        return False
    doc["scores_key"] = key
    if change.removed or change.current is None:
        doc["scores"] = None
        doc["segments"] = []
        return True
    snapshot: ScoreSnapshot = change.current
    scores = {name: getattr(snapshot, name) for name in SCORE_FIELDS}
    scores["monetary"] = str(snapshot.monetary)
    for name in ("first_order_at", "last_order_at"):
        if scores[name] is not None:
            scores[name] = iso(scores[name])
    scores["policy_version"] = change.policy_version
    scores["as_of"] = as_of
    doc["scores"] = scores
    doc["segments"] = sorted(set(change.segments))
    return True


# --------------------------------------------------------------------------- derived views


def _top(counter: dict[str, int], n: int = 3) -> list[str]:
    return [k for k, _ in Counter(counter).most_common(n)]


def transactions_view(doc: dict[str, Any]) -> dict[str, Any]:
    tx, ix = doc["tx"], doc["ix"]
    currency = main_currency(tx)
    spent = Decimal(tx["spent"].get(currency, "0")) if currency else ZERO
    count = tx["order_count"]
    aov = (spent / count).quantize(Decimal("0.01")) if count else None
    return {
        "order_count": count,
        "orders_placed": tx["orders_placed"],
        "unpaid_orders": tx["unpaid_count"],
        "cancelled_orders": tx["cancelled_count"],
        "currency": currency,
        "total_spent": str(spent.quantize(Decimal("0.01"))),
        "spent_by_currency": dict(tx["spent"]),
        "average_order_value": str(aov) if aov is not None else None,
        "first_order_at": tx["first"],
        "first_purchase_at": (doc["scores"] or {}).get("first_order_at"),
        "last_order_at": tx["last"],
        "refunds": {"count": tx["refund_count"], "amount_by_currency": dict(tx["refunded"])},
        "complaints": ix["complaints"],
        "disputes": ix["disputes"],
        "returns": ix["returns"],
        "tickets": {"count": ix["tickets"], "by_stage": dict(ix["tickets_by_stage"])},
        "reviews": {
            "count": ix["reviews"],
            "good": ix["good_reviews"],
            "bad": ix["bad_reviews"],
            "average_rating": round(ix["rating_sum"] / ix["rated"], 2) if ix["rated"] else None,
        },
        "campaign_responses": ix["campaign_responses"],
        "last_interaction_at": ix["last_at"],
    }


def subjective_view(doc: dict[str, Any], settings: Any) -> dict[str, Any]:
    tx = doc["tx"]
    currency = main_currency(tx)
    price_band = None
    if tx["units"] and currency and currency in tx["unit_spend"]:
        average = Decimal(tx["unit_spend"][currency]) / tx["units"]
        if average < settings.price_band_low_below:
            price_band = "low"
        elif average >= settings.price_band_high_from:
            price_band = "high"
        else:
            price_band = "mid"
    share = tx["discounted"] / tx["order_count"] if tx["order_count"] else None
    sensitivity = None
    if share is not None:
        if share >= settings.price_sensitivity_high_from:
            sensitivity = "high"
        elif share >= settings.price_sensitivity_medium_from:
            sensitivity = "medium"
        else:
            sensitivity = "low"
    facts = doc["f"]
    return {
        "derived": {
            "top_categories": _top(tx["categories"]),
            "top_brands": _top(tx["brands"]),
            "price_band": price_band,
            "discount_share": round(share, 4) if share is not None else None,
            "price_sensitivity": sensitivity,
            "preferred_channel": next(iter(_top(tx["channels"], 1)), None),
            "purchase_hours": [int(h) for h in _top(tx["hours"])],
        },
        "entered": {name: facts.get(name) for name in OPERATOR_SUBJECTIVE},
    }


def tags_of(doc: dict[str, Any]) -> list[str]:
    return sorted(set(doc["manual_tags"]) | set(doc["rule_tags"]))


def facts_for_rules(doc: dict[str, Any], settings: Any) -> dict[str, Any]:
    """The flat facts tag rules test (see rules.py for the names)."""
    tx_view = transactions_view(doc)
    subjective = subjective_view(doc, settings)["derived"]
    scores = doc["scores"] or {}
    province, city = region(doc)
    facts = doc["f"]
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
        "categories": list(doc["tx"]["categories"]),
        "brands": list(doc["tx"]["brands"]),
        "channels": list(doc["tx"]["channels"]),
        "segments": list(doc["segments"]),
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


def data_quality(doc: dict[str, Any], now: datetime, stale_after_days: int) -> dict[str, Any]:
    """Completeness, stale facts (not seen for ``stale_after_days``) and conflicts: values
    other sources disagree on, and an address whose city belongs to another province."""
    present = [
        name
        for name in COMPLETENESS_FIELDS
        if (doc["contacts"][name] if name in CONTACT_FIELDS else doc["f"].get(name))
    ]
    cutoff = iso(now - timedelta(days=stale_after_days))
    stale = sorted(
        name
        for name, prov in doc["prov"].items()
        if prov["seen_at"] < cutoff and prov["source"] not in (OPERATOR, None)
    )
    for kind in CONTACT_FIELDS:
        entries = doc["contacts"][kind]
        if entries and all(
            e["seen_at"] < cutoff and e["source"] != OPERATOR for e in entries.values()
        ):
            stale.append(kind)
    conflicts = [
        {
            "field": name,
            # no value: seen only where it is no evidence (an unpaid or cancelled order)
            "reason": "sources_disagree" if prov["source"] is not None else "unconfirmed",
            "value": doc["f"].get(name),
            "source": prov["source"],
            "alternatives": prov["alt"],
        }
        for name, prov in sorted(doc["prov"].items())
        if prov["alt"]
    ]
    province, city = region(doc)
    city_province = regions.city_outside_province(province, city)
    if city_province is not None:
        # kept as sent (ingest cannot tell which of the two names is wrong): reported here
        conflicts.append(
            {
                "field": "address",
                "reason": "city_not_in_province",
                "value": {"province": province, "city": city},
                "source": doc["prov"]["address"]["source"],
                "alternatives": [],
                "city_province": city_province,
            }
        )
    return {
        "completeness": round(len(present) / len(COMPLETENESS_FIELDS), 3),
        "missing": [n for n in COMPLETENESS_FIELDS if n not in present],
        "stale_fields": stale,
        "conflicts": conflicts,
        "input_warnings": input_quality.summary(doc),
    }


# --------------------------------------------------------------------------- masking


_MASKERS = {
    "name": mask_name,
    "wechat": mask_handle,
    "qq": mask_handle,
    "birthday": lambda v: (v[:4] + "-**-**") if isinstance(v, str) and len(v) >= 4 else v,
}


def mask_value(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field in ("mobiles", "phones"):
        return mask_phone(value)
    if field == "emails":
        return mask_email(value)
    if field == "address":
        masked = dict(value)
        if masked.get("address"):
            masked["address"] = "****"
        if masked.get("postal_code"):
            masked["postal_code"] = "****"
        return masked
    masker = _MASKERS.get(field)
    return masker(value) if masker else value


def basic_view(doc: dict[str, Any], pii: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The basic facet and its provenance, personal data masked unless ``pii``."""

    def show(field: str, value: Any) -> Any:
        return value if pii else mask_value(field, value)

    basic: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    for name in BASIC_FIELDS:
        basic[name] = show(name, doc["f"].get(name))
        if name in doc["prov"] and doc["prov"][name]["source"] is not None:
            prov = doc["prov"][name]
            provenance[name] = {"source": prov["source"], "seen_at": prov["seen_at"]}
    for kind in CONTACT_FIELDS:
        entries = doc["contacts"][kind]
        basic[kind] = [show(kind, v) for v in entries]
        provenance[kind] = [{"value": show(kind, v), **e} for v, e in entries.items()]
    for name in OPERATOR_SUBJECTIVE:
        if name in doc["prov"]:
            prov = doc["prov"][name]
            provenance[name] = {"source": prov["source"], "seen_at": prov["seen_at"]}
    return basic, provenance


def mask_quality(quality: dict[str, Any]) -> dict[str, Any]:
    masked = dict(quality)
    masked["conflicts"] = [
        {
            **c,
            "value": mask_value(c["field"], c["value"]),
            "alternatives": [
                {**a, "value": mask_value(c["field"], a["value"])} for a in c["alternatives"]
            ],
        }
        for c in quality["conflicts"]
    ]
    return masked


# --------------------------------------------------------------------------- merging


def merge_into(survivor: dict[str, Any], other: dict[str, Any]) -> None:
    """Fold ``other`` into ``survivor`` (facts by provenance, counters added, tags united).
    The transaction facet is rebuilt by the caller from the orders of both."""
    for name, prov in other["prov"].items():
        value = other["f"].get(name)
        observe(survivor, name, value, prov["source"], prov["seen_at"])
        for alt in prov["alt"]:
            observe_alternative(survivor, name, alt["value"], alt["source"], alt["seen_at"])
    for kind in CONTACT_FIELDS:
        if kind in survivor["locked"]:
            continue
        for value, entry in other["contacts"][kind].items():
            observe_contact(
                survivor, kind, value, entry["source"], entry["seen_at"], entry["verified"]
            )
    add_interactions(survivor["ix"], other["ix"])
    if survivor["scores"] is None and other["scores"] is not None:
        survivor["scores"], survivor["scores_key"] = other["scores"], other["scores_key"]
        survivor["segments"] = other["segments"]
    survivor["manual_tags"] = sorted(set(survivor["manual_tags"]) | set(other["manual_tags"]))
    survivor["policy"] = merge_policies(survivor["policy"], other["policy"])
    survivor["first_seen"] = min(survivor["first_seen"], other["first_seen"])


def merge_policies(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stricter of two contact policies: a channel refused by either stays refused."""
    if a is None or b is None:
        return a or b
    channels = dict(b.get("channels") or {})
    for channel, consent in (a.get("channels") or {}).items():
        theirs = channels.get(channel)
        if theirs is None or theirs["consented"]:
            channels[channel] = consent
    limits = [x for x in (a.get("max_contacts"), b.get("max_contacts")) if x is not None]
    return {
        **a,
        "channels": channels,
        "do_not_disturb": bool(a.get("do_not_disturb") or b.get("do_not_disturb")),
        "quiet_hours": a.get("quiet_hours") or b.get("quiet_hours"),
        "max_contacts": min(limits) if limits else None,
    }
