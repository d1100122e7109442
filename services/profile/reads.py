"""Reading profiles: one by customer id, the API views, the subject-access export, the
audit trail (searching them: ``customer_search``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from services.profile.config import Settings
from services.profile.domain import Profile, iso, iso_times
from services.profile.masking import mask_quality
from services.profile.readable import readable_order
from services.profile.repository import ProfileRepository, ProfileRow, read_profile_by_customer
from services.profile.unmerge_repository import MergeRecords
from services.profile.views import basic_view, data_quality, subjective_view, transactions_view
from shared.errors import NotFound
from shared.events import ContactPolicy, utcnow


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
