"""Reading profiles: one by customer id, the API views, search, the subject-access
export, the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from services.profile.config import Settings
from services.profile.domain import Profile, iso, iso_times
from services.profile.masking import mask_quality
from services.profile.normalize import normalize_email
from services.profile.readable import readable_order
from services.profile.repository import ProfileRepository, ProfileRow, read_profile_by_customer
from services.profile.unmerge_repository import MergeRecords
from services.profile.views import basic_view, data_quality, subjective_view, transactions_view
from shared import regions
from shared.errors import NotFound
from shared.events import ContactPolicy, utcnow
from shared.phones import phone_e164


def read(engine: Engine, customer_id: str) -> ProfileRow:
    """``load`` outside any transaction, for the hot GET path."""
    row = read_profile_by_customer(engine, customer_id)
    if row is None:
        raise NotFound("no such customer")
    return row


def load(session: Session | Connection, customer_id: str) -> ProfileRow:
    row = ProfileRepository(session).profile_by_customer(customer_id)
    if row is None:
        raise NotFound("no such customer")
    return row


def policy_view(profile_id: str, profile: Profile) -> dict[str, Any]:
    policy = profile.policy or {}
    return ContactPolicy.model_validate({**policy, "customer_id": profile_id}).model_dump(
        mode="json"
    )


def view(row: ProfileRow, pii: bool, settings: Settings) -> dict[str, Any]:
    """The profile as the API returns it (personal data masked unless ``pii``)."""
    profile = row.profile
    basic, provenance = basic_view(profile, pii)
    quality = data_quality(profile, utcnow(), settings.stale_after_days)
    scores = profile.scores.snapshot or {}
    return {
        "customer_id": row.profile_id,
        "merged_ids": profile.merged_ids,
        "basic": basic,
        "subjective": subjective_view(profile, settings),
        "transactions": transactions_view(profile),
        "scores": {
            "rfm_segment": scores.get("rfm_segment"),
            "lifecycle_stage": scores.get("lifecycle_stage"),
            "r_score": scores.get("r_score"),
            "f_score": scores.get("f_score"),
            "m_score": scores.get("m_score"),
            "rfm_code": scores.get("rfm_code"),
            "value_quadrant": scores.get("value_quadrant"),
            "purchase_bucket": scores.get("purchase_bucket"),
            "recency_days": scores.get("recency_days"),
            "frequency": scores.get("frequency"),
            "monetary": scores.get("monetary"),
            "policy_version": scores.get("policy_version"),
            "as_of": scores.get("as_of"),
        },
        "segments": profile.scores.segments,
        "tags": profile.tags(),
        "contact_policy": policy_view(row.profile_id, profile),
        "provenance": provenance,
        "data_quality": quality if pii else mask_quality(quality),
        "first_seen_at": profile.first_seen,
        "pii_masked": not pii,
    }


def summary(row: ProfileRow, pii: bool) -> dict[str, Any]:
    profile = row.profile
    basic, _ = basic_view(profile, pii)
    tx = transactions_view(profile)
    scores = profile.scores.snapshot or {}
    province, city = profile.region()
    return {
        "customer_id": row.profile_id,
        "name": basic["name"],
        "mobiles": basic["mobiles"],
        "emails": basic["emails"],
        "province": province,
        "city": city,
        "tags": profile.tags(),
        "segments": profile.scores.segments,
        "lifecycle_stage": scores.get("lifecycle_stage"),
        "rfm_segment": scores.get("rfm_segment"),
        "order_count": tx["order_count"],
        "total_spent": tx["total_spent"],
        "currency": tx["currency"],
    }


def search(
    session: Session,
    *,
    customer_id: str | None,
    mobile: str | None,
    email: str | None,
    tag: str | None,
    segment: str | None,
    province: str | None,
    city: str | None,
    lifecycle_stage: str | None,
    rfm_segment: str | None,
    after: str | None,
    limit: int,
    settings: Settings,
) -> list[ProfileRow]:
    repo = ProfileRepository(session)
    ids: set[str] | None = None

    def narrow(found: set[str]) -> None:
        nonlocal ids
        ids = found if ids is None else ids & found

    if customer_id:
        narrow(set(repo.aliases([customer_id]).values()))
    if mobile is not None:
        value = phone_e164(mobile, settings.default_region)
        narrow(repo.profiles_by_contact("mobile", value) if value else set())
    if email is not None:
        value = normalize_email(email)
        narrow(repo.profiles_by_contact("email", value) if value else set())
    if ids is not None and not ids:
        return []
    # names only: a city alone must not add the province it is in to the filter (a record
    # naming a city of another province is kept as sent, and must still be found by it)
    return repo.search(
        profile_ids=ids,
        tag=tag,
        segment=segment,
        province=regions.province_name(province) if province else None,
        city=regions.city_name(city) if city else None,
        lifecycle_stage=lifecycle_stage,
        rfm_segment=rfm_segment,
        after=after,
        limit=limit,
    )


def export(session: Session, customer_id: str, settings: Settings) -> dict[str, Any]:
    """Everything held on one customer, unmasked."""
    row = load(session, customer_id)
    repo = ProfileRepository(session)
    aliases = repo.aliases_of(row.profile_id)
    return {
        "exported_at": iso(utcnow()),
        "profile": view(row, True, settings),
        "customer_ids": aliases,
        "orders": [readable_order(o) for o in repo.orders_of(row.profile_id)],
        "interactions": repo.interactions_of(row.profile_id),
        # times with their offset, as everywhere in the API (SQLite hands them back naive)
        "merges": [iso_times(m) for m in MergeRecords(session).of_survivor(row.profile_id)],
        "audit": [iso_times(a) for a in repo.audit_of([row.profile_id, *aliases])],
    }


def audit_trail(session: Session, profile_id: str) -> list[dict[str, Any]]:
    """Audit entries of a profile and of every customer id merged into it."""
    repo = ProfileRepository(session)
    return repo.audit_of(sorted({profile_id, *repo.aliases_of(profile_id)}))
