"""How profiles are stored: the JSON documents' short keys <-> the typed model (``domain.py``).

Used by the repositories alone; nothing else knows these keys. The keys are those of rows
already stored (no migration): a profile document ``{"f", "prov", "contacts", "locked",
"tx", "ix", ...}``, its scores part ``{"scores", "scores_key", "segments"}`` (a row of
profile_scores; a merge snapshot keeps both in one document) and an order's contribution
``{"valid", "cur", "net", "cats", "disc", ...}``. Short keys, because a batch of the
consumer reads and writes thousands of documents: their size is its cost.

Decoding builds the dataclasses directly (no validation): these documents were written by
this module, and this is the consumer's hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson

from services.profile.domain import (
    Alternative,
    ContactEntry,
    Interactions,
    OrderContribution,
    OrderRecord,
    Profile,
    Provenance,
    Purchase,
    Scores,
    Transactions,
)

#: the keys of a stored document that hold its scores part (kept in profile_scores)
SCORE_KEYS = ("scores", "scores_key", "segments")


def decode_profile(stored: dict[str, Any], scores: Scores) -> Profile:
    """A stored profile document (its scores part given apart)."""
    # positional arguments, in the order the classes declare their fields: keywords cost
    # three times as much in a dataclass's __init__ (1.6 against 0.6 us for Transactions),
    # and the consumer decodes thousands of profiles per batch
    return Profile(
        stored["first_seen"],
        stored["f"],
        {
            name: Provenance(
                p["source"],
                p["seen_at"],
                [Alternative(a["value"], a["source"], a["seen_at"]) for a in p["alt"]],
            )
            for name, p in stored["prov"].items()
        },
        {
            kind: {
                value: ContactEntry(e["source"], e["seen_at"], e["verified"])
                for value, e in entries.items()
            }
            for kind, entries in stored["contacts"].items()
        },
        stored["locked"],
        _decode_transactions(stored["tx"]),
        _decode_interactions(stored["ix"]),
        scores,
        stored["manual_tags"],
        stored["rule_tags"],
        stored["policy"],
        stored["merged_ids"],
        stored.get("unpaid_addr") or {},
        stored.get("input_warn") or {},
    )


def encode_profile(profile: Profile) -> dict[str, Any]:
    """A profile's stored document, without its scores part (:func:`encode_scores`)."""
    stored: dict[str, Any] = {
        "f": profile.facts,
        "contacts": {
            kind: {
                value: {"source": e.source, "seen_at": e.seen_at, "verified": e.verified}
                for value, e in entries.items()
            }
            for kind, entries in profile.contacts.items()
        },
        "prov": {
            name: {
                "source": p.source,
                "seen_at": p.seen_at,
                "alt": [
                    {"value": a.value, "source": a.source, "seen_at": a.seen_at}
                    for a in p.alternatives
                ],
            }
            for name, p in profile.provenance.items()
        },
        "locked": profile.locked_contacts,
        "tx": _encode_transactions(profile.transactions),
        "ix": _encode_interactions(profile.interactions),
        "manual_tags": profile.manual_tags,
        "rule_tags": profile.rule_tags,
        "policy": profile.policy,
        "first_seen": profile.first_seen,
        "merged_ids": profile.merged_ids,
    }
    if profile.unpaid_addresses:
        stored["unpaid_addr"] = profile.unpaid_addresses
    if profile.input_warnings:
        stored["input_warn"] = profile.input_warnings
    return stored


def decode_scores(stored: dict[str, Any] | None) -> Scores:
    """A stored scores part (None: the profile has none yet)."""
    if stored is None:
        return Scores()
    return Scores(stored["scores"], stored["scores_key"], stored["segments"])


def encode_scores(scores: Scores) -> dict[str, Any]:
    return {"scores": scores.snapshot, "scores_key": scores.version, "segments": scores.segments}


def decode_snapshot(stored: dict[str, Any]) -> Profile:
    """A merge snapshot: the profile document with its scores part in it."""
    return decode_profile(stored, decode_scores(stored))


def encode_snapshot(profile: Profile) -> dict[str, Any]:
    return {**encode_profile(profile), **encode_scores(profile.scores)}


def _decode_transactions(tx: dict[str, Any]) -> Transactions:
    return Transactions(  # positional: see decode_profile
        tx["orders_placed"],
        tx["order_count"],
        tx["spent"],
        tx["refunded"],
        tx["refund_count"],
        tx["cancelled_count"],
        tx["unpaid_count"],
        tx["first"],
        tx["last"],
        tx["discounted"],
        tx["categories"],
        tx["brands"],
        tx["channels"],
        tx["hours"],
        tx["units"],
        tx["unit_spend"],
    )


def _encode_transactions(tx: Transactions) -> dict[str, Any]:
    return {
        "orders_placed": tx.orders_placed,
        "order_count": tx.order_count,
        "spent": tx.spent,
        "refunded": tx.refunded,
        "refund_count": tx.refund_count,
        "cancelled_count": tx.cancelled_count,
        "unpaid_count": tx.unpaid_count,
        "first": tx.first_order_at,
        "last": tx.last_order_at,
        "discounted": tx.discounted_orders,
        "categories": tx.categories,
        "brands": tx.brands,
        "channels": tx.channels,
        "hours": tx.hours,
        "units": tx.units,
        "unit_spend": tx.unit_spend,
    }


def _decode_interactions(ix: dict[str, Any]) -> Interactions:
    return Interactions(  # positional: see decode_profile
        ix["reviews"],
        ix["good_reviews"],
        ix["bad_reviews"],
        ix["rating_sum"],
        ix["rated"],
        ix["complaints"],
        ix["tickets"],
        ix["tickets_by_stage"],
        ix["returns"],
        ix["disputes"],
        ix["campaign_responses"],
        ix["last_at"],
    )


def _encode_interactions(ix: Interactions) -> dict[str, Any]:
    return {
        "reviews": ix.reviews,
        "good_reviews": ix.good_reviews,
        "bad_reviews": ix.bad_reviews,
        "rating_sum": ix.rating_sum,
        "rated": ix.rated,
        "complaints": ix.complaints,
        "tickets": ix.tickets,
        "tickets_by_stage": ix.tickets_by_stage,
        "returns": ix.returns,
        "disputes": ix.disputes,
        "campaign_responses": ix.campaign_responses,
        "last_at": ix.last_interaction_at,
    }


def decode_contribution(stored: dict[str, Any]) -> OrderContribution:
    purchase = None
    if stored["valid"]:
        purchase = Purchase(
            categories=stored["cats"],
            brands=stored["brands"],
            channel=stored["channel"],
            purchase_hour=stored["hour"],
            discounted=stored["disc"],
            units=stored["units"],
            item_spend=stored["spend"],
        )
    return OrderContribution(
        status=stored["status"],
        currency=stored["cur"],
        net_amount=stored["net"],
        refunded_amount=stored["refunded"],
        created_at=stored["created"],
        purchase=purchase,
    )


def encode_contribution(contribution: OrderContribution) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "valid": contribution.purchase is not None,
        "status": contribution.status,
        "cur": contribution.currency,
        "net": contribution.net_amount,
        "refunded": contribution.refunded_amount,
        "created": contribution.created_at,
    }
    purchase = contribution.purchase
    if purchase is not None:
        stored.update(
            cats=purchase.categories,
            brands=purchase.brands,
            channel=purchase.channel,
            hour=purchase.purchase_hour,
            disc=purchase.discounted,
            units=purchase.units,
            spend=purchase.item_spend,
        )
    return stored


def stored_profile(doc: str | bytes, scores: str | bytes | None) -> Profile:
    """A stored profile document with its scores part (None: no scores row yet)."""
    return decode_profile(
        orjson.loads(doc), decode_scores(None if scores is None else orjson.loads(scores))
    )


def profile_rows(profiles: Mapping[str, Profile], now: datetime) -> list[dict[str, Any]]:
    """profiles rows (without created_at): the document and its searched columns."""
    rows = []
    for pid, profile in profiles.items():
        province, city = profile.region()
        rows.append(
            {
                "profile_id": pid,
                "doc": orjson.dumps(encode_profile(profile)).decode(),
                "province": province,
                "city": city,
                "updated_at": now,
            }
        )
    return rows


def order_rows(orders: Iterable[tuple[str, OrderRecord]]) -> list[dict[str, Any]]:
    """profile_orders rows of (profile id, order)."""
    return [
        {
            "order_id": order.order_id,
            "profile_id": pid,
            "customer_id": order.customer_id,
            "version": order.version,
            "contribution": orjson.dumps(encode_contribution(order.contribution)).decode(),
        }
        for pid, order in orders
    ]
