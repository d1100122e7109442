"""Consumed events folded into the profiles: one batch loaded once, written once.
Flush, never commit: the consumer owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.profile import addresses, input_quality
from services.profile.config import Settings
from services.profile.documents import (
    KIND_OF_FIELD,
    normalize_contact,
    public_slice,
    refresh_rule_tags,
    updated_event,
)
from services.profile.domain import OrderContribution, OrderRecord, Profile, Scores, iso
from services.profile.facts import address_of, observe, observe_contact
from services.profile.identity import resolve_identity
from services.profile.locking import lock_profiles
from services.profile.normalize import normalize_email, normalize_text
from services.profile.repository import ProfileRepository
from services.profile.rules import RuleBook
from services.profile.scores import apply_segment_change
from services.profile.transactions import (
    apply_contribution,
    apply_interaction,
    order_contribution,
    rebuild_transactions,
)
from shared import topics
from shared.bus import Inbound
from shared.erasure import tombstone_keys
from shared.events import Customer, Interaction, Order, SegmentChangedPayload, encode_event, utcnow
from shared.phones import phone_e164
from shared.registry import BatchKind


@dataclass
class Batch:
    """State of one consumed batch: profiles loaded once, written once."""

    session: Session
    settings: Settings
    now: datetime
    repo: ProfileRepository = field(init=False)
    aliases: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    created: dict[str, datetime] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    before: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    indexed_before: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    segments_changed: set[str] = field(default_factory=set)
    scores_changed: set[str] = field(default_factory=set)
    #: scores of profiles a segment change reaches without loading them
    scores: dict[str, Scores] = field(default_factory=dict)
    recompute: set[str] = field(default_factory=set)
    contact_candidates: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    verified_now: set[tuple[str, str]] = field(default_factory=set)
    order_state: dict[str, tuple[str, str, OrderContribution]] = field(default_factory=dict)
    #: order id -> (profile id, order) to insert / to update
    order_inserts: dict[str, tuple[str, OrderRecord]] = field(default_factory=dict)
    order_updates: dict[str, tuple[str, OrderRecord]] = field(default_factory=dict)
    book: RuleBook = field(init=False)
    #: every customer id of the batch (left out or not)
    ids: set[str] = field(default_factory=set)
    #: erased customer id -> when (iso): only a newer fact of theirs begins a new relationship
    erased: dict[str, str] = field(default_factory=dict)
    #: messages of erased customers left out (by id(): they live as long as the batch)
    dropped: set[int] = field(default_factory=set)
    #: what the steps noted of the batch, for the loads before it is applied
    segment_ids: set[str] = field(default_factory=set)
    other_ids: set[str] = field(default_factory=set)
    order_ids: list[str] = field(default_factory=list)
    interaction_ids: list[str] = field(default_factory=list)
    seen_interactions: set[str] = field(default_factory=set)
    interactions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.repo = ProfileRepository(self.session)

    def keeps(self, message: Inbound, at: datetime | None) -> bool:
        """Whether this message is applied: not about an erased customer, unless it tells a
        time of its own (``at``) after the erasure; a message left out is noted as such."""
        erased_at = self.erased.get(message.event.data.customer_id)
        if erased_at is None or (at is not None and iso(at) > erased_at):
            return True
        self.dropped.add(id(message))
        return False

    def profile_for(self, customer_id: str, seen_at: str) -> tuple[str, Profile]:
        pid = self.aliases.get(customer_id)
        if pid is None:
            pid = self.aliases[customer_id] = customer_id
            self.profiles[pid] = Profile(first_seen=seen_at)
            self.created[pid] = self.now
            self.before[pid] = ((), None, None, None)
        profile = self.profiles[pid]
        if seen_at < profile.first_seen:
            profile.first_seen = seen_at
        self.dirty.add(pid)
        return pid, profile

    def contact(
        self,
        customer_id: str,
        profile: Profile,
        kind_field: str,
        raw: str | None,
        source: str,
        seen_at: str,
        verified_raw: set[str] | None = None,
    ) -> None:
        if not raw:
            return
        value = normalize_contact(kind_field, raw, self.settings)
        if value is None:
            return
        verified = verified_raw is not None and (raw in verified_raw or value in verified_raw)
        changed = observe_contact(profile, kind_field, value, source, seen_at, verified)
        if changed or verified:
            # only contacts new to this profile (or verified now) can be new to the index
            key = (KIND_OF_FIELD[kind_field], value, customer_id)
            self.contact_candidates[key] = self.contact_candidates.get(key, False) or verified

    def index_contacts(self) -> None:
        """Add new contact points and verifications; note contacts newly verified."""
        if not self.contact_candidates:
            return
        known = self.repo.contact_points({(k, v) for k, v, _ in self.contact_candidates})
        inserts, verify = [], []
        for key, verified in self.contact_candidates.items():
            was = known.get(key)
            if was is None:
                inserts.append(
                    {"kind": key[0], "value": key[1], "customer_id": key[2], "verified": verified}
                )
            elif verified and not was:
                verify.append(key)
            else:
                continue
            if verified:
                self.verified_now.add((key[0], key[1]))
        self.repo.insert_contact_points(inserts)
        self.repo.verify_contact_points(verify)


def start(session: Session, messages: list[Inbound], settings: Settings) -> Batch:
    batch = Batch(session, settings, utcnow())
    repo = batch.repo
    batch.ids = ids = {m.event.data.customer_id for m in messages}
    if repo.any_tombstone():
        hashes = tombstone_keys(ids)
        batch.erased = {hashes[h]: iso(at) for h, at in repo.tombstones(hashes).items()}
    batch.aliases = repo.aliases(ids)
    batch.book = RuleBook(repo.tag_rules())
    return batch


def load(batch: Batch) -> None:
    """Load once what the noted messages touch."""
    repo, book = batch.repo, batch.book
    # A segment change needs the profile document only when tag rules may read scores;
    # otherwise it rewrites the small scores row alone.
    segment_only = set() if book.rules else batch.segment_ids - batch.other_ids
    doc_ids = {batch.aliases[c] for c in batch.ids if c in batch.aliases and c not in segment_only}
    # locked before they are read: an operator's edit committed meanwhile is not overwritten
    lock_profiles(batch.session, doc_ids)
    # without tag rules, only the documents that receive a segment change need their scores
    for pid, row in repo.profiles(doc_ids, with_scores=bool(book.rules)).items():
        batch.profiles[pid] = row.profile
        batch.before[pid] = public_slice(row.profile)
        batch.indexed_before[pid] = row.indexed
    part_ids = {batch.aliases[c] for c in batch.segment_ids if c in batch.aliases}
    if not book.rules and part_ids:
        for pid, scores in repo.scores(part_ids).items():
            if pid in batch.profiles:
                batch.profiles[pid].scores = scores
            else:
                batch.scores[pid] = scores
    if batch.order_ids:
        batch.order_state = repo.orders(batch.order_ids)
    if batch.interaction_ids:
        batch.seen_interactions = repo.interaction_ids(batch.interaction_ids)


def finish(batch: Batch) -> None:
    _write_batch(batch, batch.interactions, batch.book)
    for kind, value in sorted(batch.verified_now):
        if kind in batch.settings.merge_on:
            resolve_identity(batch.session, kind, value, batch.settings)


#: one poll batch of the profile-events loop is one run: each profile is loaded and written
#: once (each event type's step is registered in ``handlers.HANDLERS``)
FOLD: BatchKind[Settings, Batch] = BatchKind(start, finish, prepare=load)


def note_order(batch: Batch, message: Inbound) -> None:
    order: Order = message.event.data
    if batch.keeps(message, order.version_at):
        batch.other_ids.add(order.customer_id)
        batch.order_ids.append(order.order_id)


def note_customer(batch: Batch, message: Inbound) -> None:
    customer: Customer = message.event.data
    # a customer record without updated_at tells no time of its own (the envelope's is when
    # ingest received it): it cannot begin a new relationship
    if batch.keeps(message, customer.updated_at):
        batch.other_ids.add(customer.customer_id)


def note_interaction(batch: Batch, message: Inbound) -> None:
    interaction: Interaction = message.event.data
    if batch.keeps(message, interaction.occurred_at):
        batch.other_ids.add(interaction.customer_id)
        batch.interaction_ids.append(interaction.interaction_id)


def note_segment_change(batch: Batch, message: Inbound) -> None:
    change: SegmentChangedPayload = message.event.data
    if batch.keeps(message, None):  # scores of an erased customer never come back
        batch.segment_ids.add(change.customer_id)


def apply_events(session: Session, events: list[Any], settings: Settings) -> None:
    """Fold a batch of consumed events into the profiles, through the consumer's registry
    (``handlers.HANDLERS``), in the caller's transaction."""
    from services.profile.handlers import HANDLERS  # it registers this module's steps

    messages = [
        Inbound("", 0, i, e.key, b"", e.type, str(e.event_id), e) for i, e in enumerate(events)
    ]
    HANDLERS.dispatch(session, messages, settings)


def apply_interaction_event(batch: Batch, message: Inbound) -> None:
    data: Interaction = message.event.data
    if id(message) in batch.dropped or data.interaction_id in batch.seen_interactions:
        return
    batch.seen_interactions.add(data.interaction_id)
    pid, profile = batch.profile_for(data.customer_id, iso(data.occurred_at))
    apply_interaction(profile.interactions, data)
    batch.interactions.append(
        {
            "interaction_id": data.interaction_id,
            "profile_id": pid,
            "customer_id": data.customer_id,
            "kind": data.kind.value,
            "occurred_at": data.occurred_at,
            "summary": data.model_dump(mode="json", exclude={"customer_id"}),
        }
    )


def apply_order_event(batch: Batch, message: Inbound) -> None:
    if id(message) not in batch.dropped:
        _apply_order(batch, message.event, message.event.data)


def apply_customer_event(batch: Batch, message: Inbound) -> None:
    if id(message) not in batch.dropped:
        _apply_customer(batch, message.event, message.event.data)


def apply_segment_event(batch: Batch, message: Inbound) -> None:
    if id(message) not in batch.dropped:
        _apply_segment(batch, message.event.data)


def _apply_order(batch: Batch, event: Any, order: Order) -> None:
    seen_at = iso(order.version_at)
    pid, profile = batch.profile_for(order.customer_id, seen_at)
    source = f"order:{order.channel or event.source}"
    buyer = order.buyer
    if buyer is not None:
        observe(profile, "name", normalize_text(buyer.name), source, seen_at)
        observe(profile, "wechat", normalize_text(buyer.wechat), source, seen_at)
        observe(profile, "qq", normalize_text(buyer.qq), source, seen_at)
        batch.contact(order.customer_id, profile, "mobiles", buyer.mobile, source, seen_at)
        batch.contact(order.customer_id, profile, "phones", buyer.phone, source, seen_at)
        batch.contact(order.customer_id, profile, "emails", buyer.email, source, seen_at)
    addresses.observe_order_address(profile, order, source + ":shipping", seen_at)
    if order.shipping is not None:
        batch.contact(
            order.customer_id,
            profile,
            "mobiles",
            order.shipping.mobile,
            source + ":shipping",
            seen_at,
        )

    version = f"{seen_at}|{order.version_key()[1]}"
    state = batch.order_state.get(order.order_id)
    if state is not None and state[1] >= version:
        return
    input_quality.note_order(profile, order)
    contribution = order_contribution(
        order, profile.facts.get("timezone") or batch.settings.shop_timezone
    )
    if state is not None:
        old_pid, _, old = state
        old_profile = batch.profiles.get(old_pid)
        if old_profile is None:  # the order moved between profiles: load the other one
            lock_profiles(batch.session, [old_pid])
            loaded = batch.repo.profiles([old_pid]).get(old_pid)
            if loaded is not None:
                batch.profiles[old_pid] = old_profile = loaded.profile
                batch.before[old_pid] = public_slice(loaded.profile)
        if old_profile is not None:
            batch.dirty.add(old_pid)
            if apply_contribution(old_profile.transactions, old, -1):
                batch.recompute.add(old_pid)
    apply_contribution(profile.transactions, contribution, +1)
    batch.order_state[order.order_id] = (pid, version, contribution)
    row = (pid, OrderRecord(order.order_id, order.customer_id, version, contribution))
    if order.order_id in batch.order_inserts or state is None:
        batch.order_inserts[order.order_id] = row
    else:
        batch.order_updates[order.order_id] = row


def _apply_customer(batch: Batch, event: Any, customer: Customer) -> None:
    seen_at = iso(customer.updated_at or event.occurred_at)
    _, profile = batch.profile_for(customer.customer_id, seen_at)
    source = f"customer:{customer.source or event.source}"
    input_quality.note_customer(profile, customer, source)
    for name in ("name", "gender", "birthday", "company", "title", "industry", "wechat", "qq"):
        observe(profile, name, normalize_text(getattr(customer, name)), source, seen_at)
    observe(profile, "timezone", customer.timezone, source, seen_at)
    if customer.address is not None:
        observe(profile, "address", address_of(customer.address.model_dump()), source, seen_at)
    verified = set(customer.verified)
    verified |= {
        v for v in (phone_e164(x, batch.settings.default_region) for x in customer.verified) if v
    }
    verified |= {v for v in (normalize_email(x) for x in customer.verified) if v}
    for raw in customer.mobiles:
        batch.contact(customer.customer_id, profile, "mobiles", raw, source, seen_at, verified)
    for raw in customer.phones:
        batch.contact(customer.customer_id, profile, "phones", raw, source, seen_at, verified)
    for raw in customer.emails:
        batch.contact(customer.customer_id, profile, "emails", raw, source, seen_at, verified)


def _apply_segment(batch: Batch, change: SegmentChangedPayload) -> None:
    pid = batch.aliases.get(change.customer_id)
    if change.removed and pid is None:
        return
    if pid is not None and pid != change.customer_id:
        return  # scores of an id merged away: the survivor's own scores are the truth
    if pid is None or pid in batch.profiles:
        pid, profile = batch.profile_for(change.customer_id, iso(change.as_of))
        target = profile.scores
    else:
        target = batch.scores[pid]
    segments = target.segments
    if apply_segment_change(target, change):
        batch.scores_changed.add(pid)
        if target.segments != segments:
            batch.segments_changed.add(pid)


def _write_batch(batch: Batch, interactions: list[dict[str, Any]], book: RuleBook) -> None:
    repo, settings, now = batch.repo, batch.settings, batch.now
    repo.insert_orders(batch.order_inserts.values())
    repo.update_orders(batch.order_updates.values())
    repo.insert_interactions(interactions)
    batch.index_contacts()
    for pid in batch.recompute:
        batch.profiles[pid].transactions = rebuild_transactions(repo.contributions_of(pid))
    dirty = {pid: batch.profiles[pid] for pid in batch.dirty}
    refresh_rule_tags(repo, book, dirty, settings)

    def scores_of(pid: str) -> Scores:
        profile = batch.profiles.get(pid)
        return profile.scores if profile is not None else batch.scores[pid]

    if batch.segments_changed:
        repo.set_segments({pid: scores_of(pid).segments for pid in batch.segments_changed})
    repo.save_scores({pid: scores_of(pid) for pid in batch.scores_changed})
    inserts, updates, published = {}, {}, []
    for pid, profile in dirty.items():
        if pid in batch.created:
            inserts[pid] = profile
        else:
            updates[pid] = profile
        if public_slice(profile) != batch.before.get(pid):
            event = updated_event(pid, profile)
            published.append((topics.PROFILES, event.key, encode_event(event)))
    repo.add_events(published, now)
    repo.insert_profiles(inserts, now)
    repo.update_profiles(updates, now, batch.indexed_before)
    repo.insert_aliases([{"customer_id": pid, "profile_id": pid} for pid in batch.created])
