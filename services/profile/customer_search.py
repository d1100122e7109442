"""Searching customers: the filters narrowed to profiles, a cursor-paged list of summaries
(personal data masked unless the caller may read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from services.profile.config import Settings
from services.profile.normalize import normalize_email
from services.profile.repository import ProfileRepository, ProfileRow
from services.profile.schemas import CustomerSummary
from services.profile.views import basic_view, transactions_view
from shared import regions
from shared.errors import Forbidden
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.phones import phone_e164


@dataclass(frozen=True, slots=True)
class CustomerQuery:
    """What a search asks for; a filter left ``None`` does not narrow it. ``mobile`` and
    ``email`` in any spelling, ``province`` and ``city`` by any of their names."""

    customer_id: str | None = None
    mobile: str | None = None
    email: str | None = None
    tag: str | None = None
    segment: str | None = None
    province: str | None = None
    city: str | None = None
    lifecycle_stage: str | None = None
    rfm_segment: str | None = None

    @property
    def by_contact(self) -> bool:
        return self.mobile is not None or self.email is not None


def search_customers(
    session: Session,
    query: CustomerQuery,
    *,
    pii: bool,
    cursor: str | None,
    limit: int,
    settings: Settings,
) -> Page[CustomerSummary]:
    """A page of the customers matching ``query``, by profile id; searching by mobile or
    e-mail needs ``pii`` (the caller's ``pii:read``)."""
    if query.by_contact and not pii:
        # else a masked answer would still tell whether a number or address is a customer
        raise Forbidden("searching by mobile or e-mail needs the scope(s): pii:read")
    position = decode_cursor(cursor)
    after = str(position["after"]) if position and "after" in position else None
    rows = matching_profiles(session, query, after=after, limit=limit + 1, settings=settings)
    items = [CustomerSummary(**summary(r, pii)) for r in rows[:limit]]
    next_cursor = (
        encode_cursor({"after": rows[limit - 1].profile_id}) if len(rows) > limit else None
    )
    return Page[CustomerSummary](items=items, next_cursor=next_cursor)


def matching_profiles(
    session: Session, query: CustomerQuery, *, after: str | None, limit: int, settings: Settings
) -> list[ProfileRow]:
    """Up to ``limit`` profiles matching ``query`` with an id after ``after``, by id."""
    repo = ProfileRepository(session)
    ids: set[str] | None = None

    def narrow(found: set[str]) -> None:
        nonlocal ids
        ids = found if ids is None else ids & found

    if query.customer_id:
        narrow(set(repo.aliases([query.customer_id]).values()))
    if query.mobile is not None:
        value = phone_e164(query.mobile, settings.default_region)
        narrow(repo.profiles_by_contact("mobile", value) if value else set())
    if query.email is not None:
        value = normalize_email(query.email)
        narrow(repo.profiles_by_contact("email", value) if value else set())
    if ids is not None and not ids:
        return []
    # names only: a city alone must not add the province it is in to the filter (a record
    # naming a city of another province is kept as sent, and must still be found by it)
    return repo.search(
        profile_ids=ids,
        tag=query.tag,
        segment=query.segment,
        province=regions.province_name(query.province) if query.province else None,
        city=regions.city_name(query.city) if query.city else None,
        lifecycle_stage=query.lifecycle_stage,
        rfm_segment=query.rfm_segment,
        after=after,
        limit=limit,
    )


def summary(row: ProfileRow, pii: bool) -> dict[str, Any]:
    """One search result's fields (personal data masked unless ``pii``)."""
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
