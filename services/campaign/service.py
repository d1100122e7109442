"""Campaign use cases: define, change status, fire triggers, run the schedule. Flush, never commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from services.campaign import entries
from services.campaign.config import Settings
from services.campaign.deleted_segments import refuse_a_deleted_segment, refuse_if_segment_deleted
from services.campaign.launch import EntryBatch, Tally, audience_predicate
from services.campaign.models import AudienceMember, Campaign
from services.campaign.projection import Transition
from services.campaign.projection_repository import AUDIENCE_COLUMNS, Erasures, Projections
from services.campaign.report import build_report
from services.campaign.repository import Campaigns, Entries
from services.campaign.schemas import (
    AudienceRead,
    CampaignCreate,
    CampaignRead,
    CampaignReport,
    EntryRead,
    LaunchResult,
    Reentry,
)
from services.campaign.skips import record as record_skips
from services.campaign.skips import skip_row
from shared.errors import Conflict, NotFound
from shared.events import ensure_aware, utcnow
from shared.pagination import Page, decode_cursor, encode_cursor

log = logging.getLogger(__name__)

#: Allowed status changes through POST .../status (running is reached by launching).
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"scheduled", "cancelled"}),
    "scheduled": frozenset({"draft", "cancelled"}),
    "running": frozenset({"completed", "cancelled"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}


def create_campaign(session: Session, body: CampaignCreate) -> Campaign:
    now = utcnow()
    campaign = Campaign(
        campaign_id=f"cmp_{uuid.uuid4().hex[:20]}",
        name=body.name,
        purpose=body.purpose.value,
        status="draft",
        audience=body.audience.model_dump(mode="json", by_alias=True, exclude_none=True)
        if body.audience
        else None,
        channels=[c.value for c in body.channels],
        content=body.content.model_dump(mode="json"),
        schedule=body.schedule.model_dump(mode="json", exclude_none=True),
        trigger=body.trigger.model_dump(mode="json", by_alias=True, exclude_none=True)
        if body.trigger
        else None,
        holdout_share=body.holdout_share,
        conversion_window_days=body.conversion_window_days,
        reentry_allowed=body.reentry.allowed,
        cooldown_days=body.reentry.cooldown_days,
        next_run_at=None,
        created_at=now,
        updated_at=now,
    )
    refuse_a_deleted_segment(session, campaign.audience)
    return Campaigns(session).add(campaign)


def get_campaign(session: Session, campaign_id: str) -> Campaign:
    campaign = Campaigns(session).get(campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    return campaign


def campaigns_page(
    session: Session, status: str | None, cursor: str | None, limit: int
) -> Page[CampaignRead]:
    """Campaigns, newest first, optionally of one status (cursor paginated)."""
    position = decode_cursor(cursor)
    after = (position["created_at"], position["id"]) if position else None
    found = Campaigns(session).page(status=status, after=after, limit=limit + 1)
    items = [to_read(c) for c in found[:limit]]
    next_cursor = None
    if len(found) > limit:
        last = found[limit - 1]
        next_cursor = encode_cursor(
            {"created_at": last.created_at.isoformat(), "id": last.campaign_id}
        )
    return Page[CampaignRead](items=items, next_cursor=next_cursor)


def entries_page(
    session: Session,
    campaign_id: str,
    *,
    outcome: str | None,
    reason: str | None,
    cursor: str | None,
    limit: int,
) -> Page[EntryRead]:
    """A page of the campaign's entries (sent, held out, excluded with its reason), by entry
    id, optionally of one outcome or exclusion reason (404 if the campaign does not exist)."""
    position = decode_cursor(cursor)
    after = int(position["after"]) if position and "after" in position else None
    get_campaign(session, campaign_id)
    rows = entries.entry_rows(
        session, campaign_id, outcome=outcome, reason=reason, after_id=after, limit=limit + 1
    )
    items = [EntryRead(**fields) for _, fields in rows[:limit]]
    next_cursor = encode_cursor({"after": rows[limit - 1][0]}) if len(rows) > limit else None
    return Page[EntryRead](items=items, next_cursor=next_cursor)


def campaign_report(session: Session, campaign_id: str) -> CampaignReport:
    """Reach, receipts, and conversion of treatment vs holdout (404 if unknown)."""
    return build_report(session, get_campaign(session, campaign_id), utcnow())


def audience_member(session: Session, customer_id: str) -> AudienceRead:
    """What campaign knows of a customer; of an erased one, only that it was erased."""
    member = Projections(session).audience_member(customer_id)
    if member is None:
        if Erasures(session).erased([customer_id]):
            return AudienceRead.erased_customer(customer_id)
        raise NotFound("no such customer")
    return AudienceRead(
        customer_id=member.customer_id,
        rfm_segment=member.rfm_segment,
        lifecycle_stage=member.lifecycle_stage,
        r_score=member.r_score,
        f_score=member.f_score,
        m_score=member.m_score,
        value_quadrant=member.value_quadrant,
        recency_days=member.recency_days,
        frequency=member.frequency,
        segments=member.segments or [],
        tags=member.tags or [],
        province=member.province,
        city=member.city,
        contact_policy=member.contact_policy,
        erased=False,
        scores_as_of=ensure_aware(member.scores_as_of) if member.scores_as_of else None,
    )


def change_status(session: Session, campaign_id: str, target: str) -> Campaign:
    campaign = get_campaign(session, campaign_id)
    if target not in TRANSITIONS[campaign.status]:
        raise Conflict(
            f"a {campaign.status} campaign cannot become {target}",
            status_now=campaign.status,
            allowed=sorted(TRANSITIONS[campaign.status]),
        )
    if target == "scheduled":
        refuse_if_segment_deleted(session, campaign)
    now = utcnow()
    campaign.status = target
    campaign.updated_at = now
    if target == "scheduled":
        schedule = campaign.schedule
        first = schedule.get("at")
        campaign.next_run_at = datetime.fromisoformat(first) if first else now
    elif target in ("draft", "cancelled", "completed"):
        campaign.next_run_at = None
        if target != "draft":
            campaign.ended_at = now
    session.flush()
    return campaign


def to_read(campaign: Campaign) -> CampaignRead:
    return CampaignRead(
        campaign_id=campaign.campaign_id,
        name=campaign.name,
        purpose=campaign.purpose,
        status=campaign.status,
        audience=campaign.audience,
        channels=campaign.channels,
        content=campaign.content,
        schedule=campaign.schedule,
        trigger=campaign.trigger,
        holdout_share=campaign.holdout_share,
        conversion_window_days=campaign.conversion_window_days,
        reentry=Reentry(allowed=campaign.reentry_allowed, cooldown_days=campaign.cooldown_days),
        next_run_at=_opt(campaign.next_run_at),
        created_at=ensure_aware(campaign.created_at),
        updated_at=ensure_aware(campaign.updated_at),
        launched_at=_opt(campaign.launched_at),
        ended_at=_opt(campaign.ended_at),
    )


def _opt(value: datetime | None) -> datetime | None:
    return ensure_aware(value) if value is not None else None


def launch_summary(
    session: Session, campaign: Campaign, run_no: int | None, resumed: bool, already: bool
) -> LaunchResult:
    """What the campaign's launches did so far, counted from the entries."""
    tally = Tally.of_entries(Entries(session).counts(campaign.campaign_id))
    return LaunchResult(
        campaign_id=campaign.campaign_id,
        status=campaign.status,
        run_no=run_no,
        resumed=resumed,
        already_launched=already,
        targeted=tally.targeted,
        sent=tally.sent,
        deferred=tally.deferred,
        holdout=tally.holdout,
        excluded=tally.excluded,
    )


def _matches(trigger: dict[str, Any], transition: Transition) -> bool:
    kind = trigger["type"]
    if kind == "lifecycle_transition":
        return (
            transition.kind == "lifecycle"
            and transition.to_value == trigger.get("to")
            and (trigger.get("from") is None or transition.from_value == trigger.get("from"))
        )
    if kind == "segment_entered":
        return transition.kind == "segment_entered" and transition.to_value == trigger.get(
            "segment_id"
        )
    if kind == "first_purchase":
        return transition.kind == "first_purchase"
    return False


#: how long after a first purchase its order may arrive and still fire ``first_purchase``
#: (an import of old history into a running welcome campaign welcomes nobody), unless the
#: trigger sets ``lookback_hours``
DEFAULT_FIRST_PURCHASE_LOOKBACK_HOURS = 72


def first_purchase_lookback(trigger: dict[str, Any]) -> timedelta | None:
    """A first_purchase trigger's lookback (None for other triggers)."""
    if trigger.get("type") != "first_purchase":
        return None
    hours = trigger.get("lookback_hours")
    return timedelta(hours=DEFAULT_FIRST_PURCHASE_LOOKBACK_HOURS if hours is None else int(hours))


def _too_old(transition: Transition, lookback: timedelta | None) -> bool:
    """A first purchase that arrived more than ``lookback`` after it was made."""
    if lookback is None or transition.purchased_at is None or transition.arrived_at is None:
        return False
    return transition.arrived_at - transition.purchased_at > lookback


def fire_triggers(
    session: Session,
    transitions: Sequence[Transition],
    settings: Settings,
    campaigns: Sequence[Campaign] | None = None,
) -> int:
    """Enter the customers of ``transitions`` into the armed triggered campaigns they match.

    ``campaigns``: the armed triggered campaigns, if the caller already read them. The
    whole batch is decided together (:class:`EntryBatch`: one read, one write), in the
    order of the campaigns and then of the transitions.
    """
    if not transitions:
        return 0
    if campaigns is None:
        campaigns = Campaigns(session).armed_triggered()
    if not campaigns:
        return 0
    session.flush()
    ids = [t.customer_id for t in transitions]
    members = Projections(session).audience_rows(ids)
    erased = Erasures(session).erased(ids)
    # per campaign, the rows its trigger and audience select and their occurrence keys
    selected: list[tuple[Campaign, list[dict[str, Any]], list[str | None]]] = []
    outside: list[dict[str, Any]] = []
    now = utcnow()
    for campaign in campaigns:
        predicate = audience_predicate(campaign.audience)
        assert campaign.trigger is not None
        rows: list[dict[str, Any]] = []
        keys: list[str | None] = []
        lookback = first_purchase_lookback(campaign.trigger)
        for transition in transitions:
            if not _matches(campaign.trigger, transition):
                continue
            customer_id = transition.customer_id
            row = _row(members.get(customer_id), customer_id, erased.get(customer_id))
            key = f"{transition.kind}:{transition.key}"
            if _too_old(transition, lookback):
                outside.append(
                    skip_row(campaign.campaign_id, row["customer_id"], key, "too_old", now)
                )
            elif predicate(row):
                rows.append(row)
                keys.append(key)
            else:
                outside.append(
                    skip_row(campaign.campaign_id, row["customer_id"], key, "not_in_audience", now)
                )
        if rows:
            selected.append((campaign, rows, keys))
    record_skips(session, outside)
    return _enter_selected(session, settings, now, selected)


def _enter_selected(
    session: Session,
    settings: Settings,
    now: datetime,
    selected: Sequence[tuple[Campaign, list[dict[str, Any]], list[str | None]]],
) -> int:
    if not selected:
        return 0
    batch = EntryBatch(
        session,
        settings,
        now,
        [campaign.campaign_id for campaign, _, _ in selected],
        [row["customer_id"] for _, rows, _ in selected for row in rows],
    )
    entered = 0
    for campaign, rows, keys in selected:
        entered += batch.enter(campaign, rows, run_no=0, trigger_keys=keys).targeted
    batch.write()
    return entered


_AUDIENCE_NAMES = tuple(c.key for c in AUDIENCE_COLUMNS)


def _row(member: AudienceMember | None, customer_id: str, pseudonym: str | None) -> dict[str, Any]:
    """An audience row as a launch reads it; an unknown customer has no scores or policy.

    ``pseudonym``: the key of an erased customer (``Erasures.erased``); their row is empty
    and named by it, so the entry that excludes them does not name them.
    """
    if member is None or pseudonym is not None:
        row: dict[str, Any] = dict.fromkeys(_AUDIENCE_NAMES)
        row.update(
            customer_id=pseudonym or customer_id,
            segments=[],
            tags=[],
            erased=pseudonym is not None,
        )
        return row
    return {name: getattr(member, name) for name in _AUDIENCE_NAMES}


#: how far before a campaign's start an unpaid order may have crossed its age and still
#: be reminded, unless the trigger sets ``lookback_hours``
DEFAULT_UNPAID_LOOKBACK_HOURS = 24


def fire_unpaid_order_triggers(session: Session, settings: Settings, now: datetime) -> int:
    """Enter customers whose unpaid order crossed a trigger's age while the campaign ran,
    or up to ``lookback_hours`` before it started; an order paid or cancelled meanwhile is
    no longer unpaid and is never reminded (each order is one occurrence: reminded once)."""
    found: list[tuple[Campaign, list[Any]]] = []
    for campaign in Campaigns(session).armed_triggered():
        trigger = campaign.trigger or {}
        if trigger.get("type") != "unpaid_order" or campaign.launched_at is None:
            continue
        age = timedelta(hours=int(trigger["older_than_hours"]))
        hours = trigger.get("lookback_hours")
        lookback = timedelta(hours=DEFAULT_UNPAID_LOOKBACK_HOURS if hours is None else int(hours))
        orders = Projections(session).unpaid_orders(
            ensure_aware(campaign.launched_at) - age - lookback, now - age
        )
        if orders:
            found.append((campaign, orders))
    ids = [o.customer_id for _, orders in found for o in orders]
    members = Projections(session).audience_rows(ids)
    erased = Erasures(session).erased(ids)
    selected: list[tuple[Campaign, list[dict[str, Any]], list[str | None]]] = []
    outside: list[dict[str, Any]] = []
    for campaign, orders in found:
        predicate = audience_predicate(campaign.audience)
        rows: list[dict[str, Any]] = []
        keys: list[str | None] = []
        for order in orders:
            row = _row(
                members.get(order.customer_id), order.customer_id, erased.get(order.customer_id)
            )
            key = f"unpaid_order:{order.order_id}"
            if predicate(row):
                rows.append(row)
                keys.append(key)
            else:
                outside.append(
                    skip_row(campaign.campaign_id, row["customer_id"], key, "not_in_audience", now)
                )
        if rows:
            selected.append((campaign, rows, keys))
    record_skips(session, outside)
    return _enter_selected(session, settings, now, selected)


def complete_finished(session: Session, now: datetime) -> list[str]:
    """Complete one-shot campaigns whose launch finished and whose window has closed."""
    done = []
    repo = Campaigns(session)
    for campaign in repo.running_batch():
        if campaign.schedule.get("type") == "recurring":
            until = campaign.schedule.get("until")
            if until is None or datetime.fromisoformat(until) > now:
                continue
        runs = repo.runs(campaign.campaign_id)
        if not runs or any(r.finished_at is None for r in runs):
            continue
        last = max(ensure_aware(r.finished_at) for r in runs if r.finished_at is not None)
        if now >= last + timedelta(days=campaign.conversion_window_days):
            campaign.status = "completed"
            campaign.ended_at = now
            campaign.updated_at = now
            done.append(campaign.campaign_id)
    return done


def advance_schedule(campaign: Campaign, now: datetime) -> None:
    """After a scheduled run: the next run of a recurring campaign, or none."""
    schedule = campaign.schedule
    if schedule.get("type") != "recurring":
        campaign.next_run_at = None
        return
    step = timedelta(hours=int(schedule["every_hours"]))
    following = ensure_aware(campaign.next_run_at or now) + step
    while following <= now:
        following += step
    until = schedule.get("until")
    campaign.next_run_at = (
        None if until is not None and following > datetime.fromisoformat(until) else following
    )
