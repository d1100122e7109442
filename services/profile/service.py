"""Profile use cases: apply consumed events, edit, tag, merge, search, export, erase.
Flush, never commit: the caller (a request or a consumed batch) owns the transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from services.profile import addresses, domain, erasure_acks, input_quality, registration
from services.profile.config import Settings
from services.profile.export_repository import SubjectExports
from services.profile.locking import load_for_update, lock_profiles
from services.profile.normalize import (
    names_conflict,
    normalize_email,
    normalize_phone,
    normalize_text,
)
from services.profile.readable import readable_order
from services.profile.repository import (
    SCORE_KEYS,
    ProfileRepository,
    ProfileRow,
    dumps,
    read_profile_by_customer,
)
from services.profile.rules import CATALOGUE, parse_rule
from services.profile.unmerge_repository import MergeSnapshots
from shared import regions, topics
from shared.bus import add_to_outbox
from shared.db import secure_deletion
from shared.erasure import tombstone_key, tombstone_keys
from shared.errors import Conflict, NotFound, ValidationProblem
from shared.events import (
    ContactPolicy,
    ContactPolicyChangedEvent,
    Customer,
    Interaction,
    Order,
    ProfileErasedEvent,
    ProfileErasedPayload,
    ProfileMergedEvent,
    ProfileMergedPayload,
    ProfileUpdatedEvent,
    ProfileUpdatedPayload,
    SegmentChangedPayload,
    encode_event,
    utcnow,
)
from shared.rules import Predicate

SOURCE = "profile"
KIND_OF_FIELD = {"mobiles": "mobile", "emails": "email", "phones": "phone"}


def public_slice(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What ProfileUpdatedPayload carries: tags, province, city, timezone."""
    province, city = domain.region(doc)
    return (tuple(domain.tags_of(doc)), province, city, doc["f"].get("timezone"))


def normalize_contact(kind_field: str, raw: str, settings: Settings) -> str | None:
    """A contact in its stored form (e-mail, E.164 mobile; a phone that is not one is kept
    as cleaned text), or None if it is not one."""
    if kind_field == "emails":
        return normalize_email(raw)
    value = normalize_phone(raw, settings.default_region)
    if value is None and kind_field == "phones":
        value = normalize_text(raw)
    return value


def profile_row(profile_id: str, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The profiles row of a document (its scores part is stored apart: scores_row)."""
    province, city = domain.region(doc)
    # the scores part leaves the document for the dump and comes back (cheaper than a copy
    # of the document: the consumer writes thousands per batch)
    part = {k: doc.pop(k) for k in SCORE_KEYS if k in doc}
    try:
        stored = dumps(doc)
    finally:
        doc.update(part)
    return {
        "profile_id": profile_id,
        "doc": stored,
        "province": province,
        "city": city,
        "updated_at": now,
    }


def scores_row(profile_id: str, part: dict[str, Any]) -> dict[str, Any]:
    scores = part["scores"] or {}
    return {
        "profile_id": profile_id,
        "scores": dumps({k: part[k] for k in SCORE_KEYS}),
        "lifecycle_stage": scores.get("lifecycle_stage"),
        "rfm_segment": scores.get("rfm_segment"),
    }


def updated_event(profile_id: str, doc: dict[str, Any]) -> ProfileUpdatedEvent:
    tags, province, city, timezone = public_slice(doc)
    return ProfileUpdatedEvent(
        source=SOURCE,
        key=profile_id,
        data=ProfileUpdatedPayload(
            customer_id=profile_id,
            tags=list(tags),
            province=province,
            city=city,
            timezone=timezone,
        ),
    )


def publish_updated(session: Session, profile_id: str, doc: dict[str, Any]) -> None:
    add_to_outbox(session, topics.PROFILES, updated_event(profile_id, doc))


class RuleBook:
    """The tag rules, parsed once per transaction."""

    def __init__(self, rules: list[dict[str, Any]]) -> None:
        # compiled once: a batch tests every rule against every profile it touches
        self.rules: list[tuple[str, Predicate]] = [
            (r["tag"], CATALOGUE.predicate(parse_rule(r["rule"]))) for r in rules
        ]

    def tags_for(self, doc: dict[str, Any], settings: Settings) -> list[str]:
        if not self.rules:
            return []
        facts = domain.facts_for_rules(doc, settings)
        return sorted({tag for tag, test in self.rules if test(facts)})


def refresh_rule_tags(
    repo: ProfileRepository,
    book: RuleBook,
    docs: dict[str, dict[str, Any]],
    settings: Settings,
) -> None:
    """Re-evaluate tag rules on changed profiles; keep the tag index in step."""
    added: list[tuple[str, str, str]] = []
    removed: list[tuple[str, str, str]] = []
    for pid, doc in docs.items():
        new = book.tags_for(doc, settings)
        old = doc["rule_tags"]
        if new != old:
            added += [(pid, t, "rule") for t in set(new) - set(old)]
            removed += [(pid, t, "rule") for t in set(old) - set(new)]
            doc["rule_tags"] = new
    repo.change_tags(added, removed)


# --------------------------------------------------------------------------- consuming


def data_time(event: Any) -> datetime:
    """The time a consumed fact describes (what tombstones and ordering compare)."""
    data = event.data
    if isinstance(data, Order):
        return data.version_at
    if isinstance(data, Customer):
        return data.updated_at or event.occurred_at
    if isinstance(data, Interaction):
        return data.occurred_at
    if isinstance(data, SegmentChangedPayload):
        return data.as_of
    occurred: datetime = event.occurred_at
    return occurred


@dataclass
class Batch:
    """State of one consumed batch: profiles loaded once, written once."""

    session: Session
    settings: Settings
    now: datetime
    repo: ProfileRepository = field(init=False)
    aliases: dict[str, str] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: dict[str, datetime] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    before: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    indexed_before: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    segments_changed: set[str] = field(default_factory=set)
    scores_changed: set[str] = field(default_factory=set)
    score_parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    recompute: set[str] = field(default_factory=set)
    contact_candidates: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    verified_now: set[tuple[str, str]] = field(default_factory=set)
    order_state: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    order_inserts: dict[str, dict[str, Any]] = field(default_factory=dict)
    order_updates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.repo = ProfileRepository(self.session)

    def doc_for(self, customer_id: str, seen_at: str) -> tuple[str, dict[str, Any]]:
        pid = self.aliases.get(customer_id)
        if pid is None:
            pid = self.aliases[customer_id] = customer_id
            doc = domain.new_doc(seen_at)
            self.docs[pid] = doc
            self.created[pid] = self.now
            self.before[pid] = ((), None, None, None)
        doc = self.docs[pid]
        if seen_at < doc["first_seen"]:
            doc["first_seen"] = seen_at
        self.dirty.add(pid)
        return pid, doc

    def contact(
        self,
        customer_id: str,
        doc: dict[str, Any],
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
        changed = domain.observe_contact(doc, kind_field, value, source, seen_at, verified)
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


def apply_events(session: Session, events: list[Any], settings: Settings) -> None:
    """Fold a batch of consumed events into the profiles, in one transaction."""
    batch = Batch(session, settings, utcnow())
    repo = batch.repo
    ids = {e.data.customer_id for e in events}
    erased: dict[str, str] = {}
    if repo.any_tombstone():
        hashes = tombstone_keys(ids)
        erased = {hashes[h]: domain.iso(at) for h, at in repo.tombstones(hashes).items()}
    if erased:
        events = [
            e
            for e in events
            if e.data.customer_id not in erased
            or (
                not isinstance(e.data, SegmentChangedPayload)
                # a customer record without updated_at tells no time of its own (the envelope's
                # is when ingest received it): it cannot begin a new relationship
                and not (isinstance(e.data, Customer) and e.data.updated_at is None)
                and domain.iso(data_time(e)) > erased[e.data.customer_id]
            )
        ]
    batch.aliases = repo.aliases(ids)
    book = RuleBook(repo.tag_rules())
    # one pass over the batch for what the loads below need
    segment_ids: set[str] = set()
    other_ids: set[str] = set()
    order_ids: list[str] = []
    interaction_ids: list[str] = []
    for e in events:
        data = e.data
        if isinstance(data, SegmentChangedPayload):
            segment_ids.add(data.customer_id)
        else:
            other_ids.add(data.customer_id)
            if isinstance(data, Order):
                order_ids.append(data.order_id)
            elif isinstance(data, Interaction):
                interaction_ids.append(data.interaction_id)
    # A segment change needs the profile document only when tag rules may read scores;
    # otherwise it rewrites the small scores row alone.
    segment_only = set() if book.rules else segment_ids - other_ids
    doc_ids = {batch.aliases[c] for c in ids if c in batch.aliases and c not in segment_only}
    # locked before they are read: an operator's edit committed meanwhile is not overwritten
    lock_profiles(session, doc_ids)
    # without tag rules, only the documents that receive a segment change need their scores
    for pid, row in repo.profiles(doc_ids, with_scores=bool(book.rules)).items():
        batch.docs[pid] = row.doc
        batch.before[pid] = public_slice(row.doc)
        batch.indexed_before[pid] = row.indexed
    part_ids = {batch.aliases[c] for c in segment_ids if c in batch.aliases}
    if not book.rules and part_ids:
        for pid, part in repo.score_parts(part_ids).items():
            if pid in batch.docs:
                batch.docs[pid].update(part)
            else:
                batch.score_parts[pid] = part
    if order_ids:
        batch.order_state = repo.orders(order_ids)
    seen_interactions = repo.interaction_ids(interaction_ids) if interaction_ids else set()
    interactions: list[dict[str, Any]] = []

    for event in events:
        data = event.data
        if isinstance(data, Order):
            _apply_order(batch, event, data)
        elif isinstance(data, Customer):
            _apply_customer(batch, event, data)
        elif isinstance(data, Interaction):
            if data.interaction_id in seen_interactions:
                continue
            seen_interactions.add(data.interaction_id)
            pid, doc = batch.doc_for(data.customer_id, domain.iso(data.occurred_at))
            domain.apply_interaction(doc["ix"], data)
            interactions.append(
                {
                    "interaction_id": data.interaction_id,
                    "profile_id": pid,
                    "customer_id": data.customer_id,
                    "kind": data.kind.value,
                    "occurred_at": data.occurred_at,
                    "summary": dumps(data.model_dump(mode="json", exclude={"customer_id"})),
                }
            )
        elif isinstance(data, SegmentChangedPayload):
            _apply_segment(batch, data)
        else:
            # a type registered in handlers.HANDLERS but not applied here is a bug
            raise TypeError(f"profile cannot apply {event.type}")

    _write_batch(batch, interactions, book)
    for kind, value in sorted(batch.verified_now):
        if kind in settings.merge_on:
            resolve_identity(session, kind, value, settings)


def _apply_order(batch: Batch, event: Any, order: Order) -> None:
    seen_at = domain.iso(order.version_at)
    pid, doc = batch.doc_for(order.customer_id, seen_at)
    source = f"order:{order.channel or event.source}"
    buyer = order.buyer
    if buyer is not None:
        domain.observe(doc, "name", normalize_text(buyer.name), source, seen_at)
        domain.observe(doc, "wechat", normalize_text(buyer.wechat), source, seen_at)
        domain.observe(doc, "qq", normalize_text(buyer.qq), source, seen_at)
        batch.contact(order.customer_id, doc, "mobiles", buyer.mobile, source, seen_at)
        batch.contact(order.customer_id, doc, "phones", buyer.phone, source, seen_at)
        batch.contact(order.customer_id, doc, "emails", buyer.email, source, seen_at)
    addresses.observe_order_address(doc, order, source + ":shipping", seen_at)
    if order.shipping is not None:
        batch.contact(
            order.customer_id, doc, "mobiles", order.shipping.mobile, source + ":shipping", seen_at
        )

    version = f"{seen_at}|{order.version_key()[1]}"
    state = batch.order_state.get(order.order_id)
    if state is not None and state[1] >= version:
        return
    input_quality.note_order(doc, order)
    contribution = domain.order_contribution(
        order, doc["f"].get("timezone") or batch.settings.shop_timezone
    )
    if state is not None:
        old_pid, _, old = state
        old_doc = batch.docs.get(old_pid)
        if old_doc is None:  # the order moved between profiles: load the other one
            lock_profiles(batch.session, [old_pid])
            loaded = batch.repo.profiles([old_pid]).get(old_pid)
            if loaded is not None:
                batch.docs[old_pid] = old_doc = loaded.doc
                batch.before[old_pid] = public_slice(loaded.doc)
        if old_doc is not None:
            batch.dirty.add(old_pid)
            if domain.apply_contribution(old_doc["tx"], old, -1):
                batch.recompute.add(old_pid)
    domain.apply_contribution(doc["tx"], contribution, +1)
    batch.order_state[order.order_id] = (pid, version, contribution)
    row = {
        "order_id": order.order_id,
        "profile_id": pid,
        "customer_id": order.customer_id,
        "version": version,
        "contribution": dumps(contribution),
    }
    if order.order_id in batch.order_inserts or state is None:
        batch.order_inserts[order.order_id] = row
    else:
        batch.order_updates[order.order_id] = row


def _apply_customer(batch: Batch, event: Any, customer: Customer) -> None:
    seen_at = domain.iso(customer.updated_at or event.occurred_at)
    _, doc = batch.doc_for(customer.customer_id, seen_at)
    source = f"customer:{customer.source or event.source}"
    input_quality.note_customer(doc, customer, source)
    for name in ("name", "gender", "birthday", "company", "title", "industry", "wechat", "qq"):
        domain.observe(doc, name, normalize_text(getattr(customer, name)), source, seen_at)
    domain.observe(doc, "timezone", customer.timezone, source, seen_at)
    if customer.address is not None:
        domain.observe(
            doc, "address", domain.address_of(customer.address.model_dump()), source, seen_at
        )
    verified = set(customer.verified)
    verified |= {
        v
        for v in (normalize_phone(x, batch.settings.default_region) for x in customer.verified)
        if v
    }
    verified |= {v for v in (normalize_email(x) for x in customer.verified) if v}
    for raw in customer.mobiles:
        batch.contact(customer.customer_id, doc, "mobiles", raw, source, seen_at, verified)
    for raw in customer.phones:
        batch.contact(customer.customer_id, doc, "phones", raw, source, seen_at, verified)
    for raw in customer.emails:
        batch.contact(customer.customer_id, doc, "emails", raw, source, seen_at, verified)


def _apply_segment(batch: Batch, change: SegmentChangedPayload) -> None:
    pid = batch.aliases.get(change.customer_id)
    if change.removed and pid is None:
        return
    if pid is not None and pid != change.customer_id:
        return  # scores of an id merged away: the survivor's own scores are the truth
    if pid is None or pid in batch.docs:
        pid, target = batch.doc_for(change.customer_id, domain.iso(change.as_of))
    else:
        target = batch.score_parts[pid]
    segments = target["segments"]
    if domain.apply_segment_change(target, change):
        batch.scores_changed.add(pid)
        if target["segments"] != segments:
            batch.segments_changed.add(pid)


def _write_batch(batch: Batch, interactions: list[dict[str, Any]], book: RuleBook) -> None:
    repo, settings, now = batch.repo, batch.settings, batch.now
    repo.insert_orders(list(batch.order_inserts.values()))
    repo.update_orders(list(batch.order_updates.values()))
    repo.insert_interactions(interactions)
    batch.index_contacts()
    for pid in batch.recompute:
        batch.docs[pid]["tx"] = domain.rebuild_transactions(repo.contributions_of(pid))
    dirty = {pid: batch.docs[pid] for pid in batch.dirty}
    refresh_rule_tags(repo, book, dirty, settings)

    def part(pid: str) -> dict[str, Any]:
        return batch.docs.get(pid) or batch.score_parts[pid]

    if batch.segments_changed:
        repo.set_segments({pid: part(pid)["segments"] for pid in batch.segments_changed})
    repo.save_scores([scores_row(pid, part(pid)) for pid in batch.scores_changed])
    inserts, updates, published = [], [], []
    for pid, doc in dirty.items():
        row = profile_row(pid, doc, now)
        if pid in batch.created:
            inserts.append({**row, "created_at": now})
        else:
            updates.append(row)
        if public_slice(doc) != batch.before.get(pid):
            event = updated_event(pid, doc)
            published.append((topics.PROFILES, event.key, encode_event(event)))
    repo.add_events(published, now)
    repo.insert_profiles(inserts)
    repo.update_profiles(updates, batch.indexed_before)
    repo.insert_aliases([{"customer_id": pid, "profile_id": pid} for pid in batch.created])


# --------------------------------------------------------------------------- identity


def _one_person(rows: list[ProfileRow]) -> bool:
    """Whether every profile has a known name and it is the same one."""
    names = [row.doc["f"].get("name") for row in rows]
    if not names or any(not n for n in names):
        return False
    return not any(names_conflict(names[0], n) for n in names[1:])


def survivor_of(rows: list[ProfileRow]) -> ProfileRow:
    """The documented survivor rule: the profile first seen earliest (by the time of the
    data, not of arrival) survives; on a tie, the smallest customer id."""
    return min(rows, key=lambda r: (r.doc["first_seen"], r.profile_id))


def resolve_identity(session: Session, kind: str, value: str, settings: Settings) -> str | None:
    """Merge the profiles sharing one verified contact, unless a safeguard forbids it.

    Safeguards against the household / shop-assistant false merge:
    1. only contacts verified on both profiles count (order contacts are never verified);
    2. a contact held by ``shared_contact_threshold`` or more customer ids is a shared one
       (a family phone, a shop assistant typing their own number) and merges nothing,
       unless every holder carries the same known name (one person with many accounts);
    3. two profiles whose names are both known and differ never merge automatically.
    Every decision, merge or refusal, is audited. Returns the merge id if one happened.
    """
    repo = ProfileRepository(session)
    holders = repo.contact_holders(kind, value)
    holder_ids = {cid for cid, _, _ in holders}
    candidates = sorted(
        {pid for _, verified, pid in holders if verified or not settings.merge_requires_verified}
    )
    if len(candidates) < 2:
        return None
    now = utcnow()
    holder_rows = repo.profiles({pid for _, _, pid in holders})
    rows = [holder_rows[pid] for pid in candidates if pid in holder_rows]
    if len(holder_ids) >= settings.shared_contact_threshold and not _one_person(
        list(holder_rows.values())
    ):
        for pid in candidates:
            repo.audit(
                at=now,
                actor="identity-resolution",
                action="merge_refused",
                subject=pid,
                detail={"kind": kind, "reason": "shared_contact", "holders": len(holder_ids)},
            )
        return None
    survivor = survivor_of(rows)
    mergeable = []
    for row in rows:
        if row.profile_id == survivor.profile_id:
            continue
        if settings.merge_blocked_on_name_conflict and names_conflict(
            survivor.doc["f"].get("name"), row.doc["f"].get("name")
        ):
            for pid in (survivor.profile_id, row.profile_id):
                repo.audit(
                    at=now,
                    actor="identity-resolution",
                    action="merge_refused",
                    subject=pid,
                    detail={"kind": kind, "reason": "name_conflict"},
                )
            continue
        mergeable.append(row.profile_id)
    if not mergeable:
        return None
    return merge_profiles(
        session,
        survivor.profile_id,
        mergeable,
        f"shared verified {kind}",
        "identity-resolution",
        settings,
    )


def merge_profiles(
    session: Session,
    survivor_id: str,
    other_ids: list[str],
    reason: str,
    actor: str,
    settings: Settings,
) -> str:
    """Fold profiles into a survivor; audited; publishes ``profile.merged``."""
    repo = ProfileRepository(session)
    lock_profiles(session, [survivor_id, *other_ids])
    rows = repo.profiles([survivor_id, *other_ids])
    if survivor_id not in rows:
        raise NotFound("no such customer")
    missing = [pid for pid in other_ids if pid not in rows]
    if missing:
        raise NotFound(f"no such customer: {len(missing)} of merge_ids")
    survivor = rows[survivor_id].doc
    before_slice = public_slice(survivor)
    before_policy = survivor["policy"]
    merge_id = str(uuid.uuid4())
    # what an unmerge gives back (services/profile/unmerge.py)
    snapshots = MergeSnapshots(session)
    for pid in [survivor_id, *other_ids]:
        snapshots.add(merge_id, pid, rows[pid].doc, sorted({pid, *repo.aliases_of(pid)}))
    merged: list[str] = []
    for pid in other_ids:
        other = rows[pid].doc
        domain.merge_into(survivor, other)
        merged += [pid, *other["merged_ids"]]
    survivor["merged_ids"] = sorted(set(survivor["merged_ids"]) | set(merged))
    repo.repoint(other_ids, survivor_id)
    repo.delete_profiles(other_ids)
    survivor["tx"] = domain.rebuild_transactions(repo.contributions_of(survivor_id))
    repo.set_tags(survivor_id, "manual", survivor["manual_tags"])
    # the survivor's rule tags are re-evaluated against its stored ones: only tags that
    # change are written (the merged profiles' rows went with delete_profiles)
    refresh_rule_tags(repo, RuleBook(repo.tag_rules()), {survivor_id: survivor}, settings)
    repo.set_segments({survivor_id: survivor["segments"]})
    now = utcnow()
    repo.update_profiles([profile_row(survivor_id, survivor, now)])
    repo.save_scores([scores_row(survivor_id, survivor)])
    repo.add_merge(
        {
            "merge_id": merge_id,
            "survivor_id": survivor_id,
            "merged_ids": other_ids,
            "reason": reason,
            "actor": actor,
            "merged_at": now,
        }
    )
    repo.audit(
        at=now,
        actor=actor,
        action="merge",
        subject=survivor_id,
        detail={"merge_id": merge_id, "merged_ids": other_ids, "reason": reason},
    )
    add_to_outbox(
        session,
        topics.PROFILES,
        ProfileMergedEvent(
            source=SOURCE,
            key=survivor_id,
            data=ProfileMergedPayload(
                survivor_id=survivor_id, merged_ids=other_ids, reason=reason, merge_id=merge_id
            ),
        ),
    )
    if public_slice(survivor) != before_slice:
        publish_updated(session, survivor_id, survivor)
    if survivor["policy"] != before_policy and survivor["policy"] is not None:
        _publish_policy(session, survivor_id, survivor["policy"])
    return merge_id


# --------------------------------------------------------------------------- reading


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


def policy_view(profile_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    policy = doc["policy"] or {}
    return ContactPolicy.model_validate({**policy, "customer_id": profile_id}).model_dump(
        mode="json"
    )


def view(row: ProfileRow, pii: bool, settings: Settings) -> dict[str, Any]:
    """The profile as the API returns it (personal data masked unless ``pii``)."""
    doc = row.doc
    basic, provenance = domain.basic_view(doc, pii)
    quality = domain.data_quality(doc, utcnow(), settings.stale_after_days)
    scores = doc["scores"] or {}
    return {
        "customer_id": row.profile_id,
        "merged_ids": doc["merged_ids"],
        "basic": basic,
        "subjective": domain.subjective_view(doc, settings),
        "transactions": domain.transactions_view(doc),
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
        "segments": doc["segments"],
        "tags": domain.tags_of(doc),
        "contact_policy": policy_view(row.profile_id, doc),
        "provenance": provenance,
        "data_quality": quality if pii else domain.mask_quality(quality),
        "first_seen_at": doc["first_seen"],
        "pii_masked": not pii,
    }


def summary(row: ProfileRow, pii: bool) -> dict[str, Any]:
    doc = row.doc
    basic, _ = domain.basic_view(doc, pii)
    tx = domain.transactions_view(doc)
    scores = doc["scores"] or {}
    province, city = domain.region(doc)
    return {
        "customer_id": row.profile_id,
        "name": basic["name"],
        "mobiles": basic["mobiles"],
        "emails": basic["emails"],
        "province": province,
        "city": city,
        "tags": domain.tags_of(doc),
        "segments": doc["segments"],
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
        value = normalize_phone(mobile, settings.default_region)
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


# --------------------------------------------------------------------------- editing


def _save(session: Session, row: ProfileRow, before: tuple[Any, ...], settings: Settings) -> None:
    repo = ProfileRepository(session)
    refresh_rule_tags(repo, RuleBook(repo.tag_rules()), {row.profile_id: row.doc}, settings)
    repo.update_profiles([profile_row(row.profile_id, row.doc, utcnow())])
    if public_slice(row.doc) != before:
        publish_updated(session, row.profile_id, row.doc)


def patch_profile(
    session: Session, customer_id: str, changes: dict[str, Any], actor: str, settings: Settings
) -> ProfileRow:
    """An operator's edit: each field given wins over derived data; ``null`` clears it."""
    row = load_for_update(session, customer_id)
    doc = row.doc
    before = public_slice(doc)
    seen_at = domain.iso(utcnow())
    verified_raw = set(changes.pop("verified", None) or [])
    for name, value in changes.items():
        if name in domain.CONTACT_FIELDS:
            if value is None:
                doc["contacts"][name] = {}
                doc["locked"] = [k for k in doc["locked"] if k != name]
                continue
            normalised = []
            verified = set()
            for raw in value:
                clean = normalize_contact(name, raw, settings)
                if clean is None:
                    raise ValidationProblem(f"{raw!r} is not a valid {name[:-1]}")
                normalised.append(clean)
                if raw in verified_raw or clean in verified_raw:
                    verified.add(clean)
            domain.replace_contacts(doc, name, normalised, verified, seen_at)
            _index_contacts(session, row.profile_id, KIND_OF_FIELD[name], normalised, verified)
        elif value is None:
            domain.clear_fact(doc, name)
        else:
            if name == "address":
                value = domain.address_of(domain.normalised_address(value))
            elif isinstance(value, str):
                value = normalize_text(value)
            domain.observe(doc, name, value, domain.OPERATOR, seen_at)
    ProfileRepository(session).audit(
        at=utcnow(),
        actor=actor,
        action="patch",
        subject=row.profile_id,
        detail={"fields": sorted(changes)},
    )
    _save(session, row, before, settings)
    for kind_field in ("mobiles", "emails"):
        kind = KIND_OF_FIELD[kind_field]
        if kind in settings.merge_on and kind_field in changes and changes[kind_field]:
            for value in domain.verified_contacts(doc, kind_field):
                resolve_identity(session, kind, value, settings)
    return load(session, customer_id)


def _index_contacts(
    session: Session, customer_id: str, kind: str, values: list[str], verified: set[str]
) -> None:
    repo = ProfileRepository(session)
    known = repo.contact_points([(kind, v) for v in values])
    repo.insert_contact_points(
        [
            {"kind": kind, "value": v, "customer_id": customer_id, "verified": v in verified}
            for v in values
            if (kind, v, customer_id) not in known
        ]
    )
    repo.verify_contact_points(
        [
            (kind, v, customer_id)
            for v in values
            if v in verified and known.get((kind, v, customer_id)) is False
        ]
    )


# --------------------------------------------------------------------------- tags


def add_tags(
    session: Session, customer_id: str, tags: list[str], actor: str, settings: Settings
) -> ProfileRow:
    row = registration.load_or_register(session, customer_id)
    before = public_slice(row.doc)
    row.doc["manual_tags"] = sorted(set(row.doc["manual_tags"]) | set(tags))
    repo = ProfileRepository(session)
    repo.set_tags(row.profile_id, "manual", row.doc["manual_tags"])
    repo.audit(
        at=utcnow(), actor=actor, action="tag", subject=row.profile_id, detail={"added": tags}
    )
    _save(session, row, before, settings)
    return row


def remove_tag(
    session: Session, customer_id: str, tag: str, actor: str, settings: Settings
) -> ProfileRow:
    row = load_for_update(session, customer_id)
    if tag not in row.doc["manual_tags"]:
        if tag in row.doc["rule_tags"]:
            raise Conflict(f"tag {tag!r} comes from a tag rule; change the rule instead")
        raise NotFound("the customer has no such tag")
    before = public_slice(row.doc)
    row.doc["manual_tags"] = [t for t in row.doc["manual_tags"] if t != tag]
    repo = ProfileRepository(session)
    repo.set_tags(row.profile_id, "manual", row.doc["manual_tags"])
    repo.audit(
        at=utcnow(), actor=actor, action="untag", subject=row.profile_id, detail={"removed": tag}
    )
    _save(session, row, before, settings)
    return row


def create_tag_rule(
    session: Session, tag: str, rule: dict[str, Any], description: str | None, settings: Settings
) -> dict[str, Any]:
    """Store a rule and apply it to every existing profile (in pages of 500)."""
    repo = ProfileRepository(session)
    if any(r["tag"] == tag for r in repo.tag_rules()):
        raise Conflict(f"a rule for tag {tag!r} exists; delete it first")
    row = {
        "rule_id": str(uuid.uuid4()),
        "tag": tag,
        "rule": rule,
        "description": description,
        "created_at": utcnow(),
    }
    repo.add_tag_rule(row)
    reapply_rules(session, settings)
    return row


def delete_tag_rule(session: Session, rule_id: str, settings: Settings) -> None:
    if ProfileRepository(session).delete_tag_rule(rule_id) is None:
        raise NotFound(f"no tag rule {rule_id}")
    reapply_rules(session, settings)


def reapply_rules(session: Session, settings: Settings) -> int:
    """Re-evaluate every tag rule on every profile; returns how many profiles changed."""
    repo = ProfileRepository(session)
    book = RuleBook(repo.tag_rules())
    after: str | None = None
    changed = 0
    now = utcnow()
    while True:
        ids = repo.all_profile_ids(after, 500)
        if not ids:
            return changed
        after = ids[-1]
        lock_profiles(session, ids)
        docs = {pid: row.doc for pid, row in repo.profiles(ids).items()}
        before = {pid: (list(doc["rule_tags"]), public_slice(doc)) for pid, doc in docs.items()}
        refresh_rule_tags(repo, book, docs, settings)
        rows = []
        for pid, doc in docs.items():
            if doc["rule_tags"] != before[pid][0]:
                rows.append(profile_row(pid, doc, now))
                if public_slice(doc) != before[pid][1]:
                    publish_updated(session, pid, doc)
        repo.update_profiles(rows)
        changed += len(rows)


# --------------------------------------------------------------------------- contact policy


def _publish_policy(session: Session, profile_id: str, policy: dict[str, Any]) -> ContactPolicy:
    model = ContactPolicy.model_validate({**policy, "customer_id": profile_id})
    add_to_outbox(
        session,
        topics.PROFILES,
        ContactPolicyChangedEvent(source=SOURCE, key=profile_id, data=model),
    )
    return model


def set_contact_policy(
    session: Session, customer_id: str, policy: dict[str, Any], actor: str
) -> ContactPolicy:
    """Replace the contact policy; published as ``profile.contact_policy_changed``. A
    customer profile has not seen yet is registered (``registration``)."""
    row = registration.load_or_register(session, customer_id)
    now = utcnow()
    stored = dict(policy)
    stored.pop("customer_id", None)
    stored["updated_at"] = domain.iso(now)
    for consent in (stored.get("channels") or {}).values():
        if consent.get("at") is None:
            consent["at"] = domain.iso(now)
        if consent.get("source") is None:
            consent["source"] = actor
    row.doc["policy"] = stored
    repo = ProfileRepository(session)
    repo.update_profiles([profile_row(row.profile_id, row.doc, now)])
    repo.audit(
        at=now,
        actor=actor,
        action="contact_policy",
        subject=row.profile_id,
        detail={"policy": stored},
    )
    return _publish_policy(session, row.profile_id, stored)


# --------------------------------------------------------------------------- export and erasure


def export(session: Session, customer_id: str, settings: Settings) -> dict[str, Any]:
    """Everything held on one customer, unmasked."""
    row = load(session, customer_id)
    repo = ProfileRepository(session)
    aliases = repo.aliases_of(row.profile_id)
    return {
        "exported_at": domain.iso(utcnow()),
        "profile": view(row, True, settings),
        "customer_ids": aliases,
        "orders": [readable_order(o) for o in repo.orders_of(row.profile_id)],
        "interactions": repo.interactions_of(row.profile_id),
        # times with their offset, as everywhere in the API (SQLite hands them back naive)
        "merges": [domain.iso_times(m) for m in repo.merges_of(row.profile_id)],
        "audit": [domain.iso_times(a) for a in repo.audit_of([row.profile_id, *aliases])],
    }


def erase(session: Session, customer_id: str, actor: str) -> dict[str, Any]:
    """Remove a customer's personal data here, keep a tombstone per customer id (digest
    only), scrub the audit trail down to the fact, and publish ``profile.erased``."""
    row = load(session, customer_id)
    repo = ProfileRepository(session)
    aliases = sorted(set(repo.aliases_of(row.profile_id)) | {row.profile_id})
    now = utcnow()
    erasure_id = str(uuid.uuid4())
    with secure_deletion(session):  # every byte zeroed, large rows' overflow pages too
        repo.drop_pending_events(aliases)
        repo.delete_contact_points(aliases)
        repo.delete_history(row.profile_id)
        repo.delete_profiles([row.profile_id])
        SubjectExports(session).delete_of(row.profile_id)
        MergeSnapshots(session).drop_of(aliases)
        subject = f"erased:{erasure_id}"
        repo.scrub_audit(aliases, subject)
        repo.scrub_merges(row.profile_id, subject)
    repo.add_tombstones(
        [
            {"customer_hash": tombstone_key(cid), "erasure_id": erasure_id, "erased_at": now}
            for cid in aliases
        ]
    )
    repo.audit(
        at=now,
        actor=actor,
        action="erase",
        subject=subject,
        detail={"erasure_id": erasure_id, "customer_ids": len(aliases)},
    )
    for part, cid in enumerate(aliases):
        add_to_outbox(
            session,
            topics.PROFILES,
            ProfileErasedEvent(
                source=SOURCE,
                key=cid,
                data=ProfileErasedPayload(
                    customer_id=cid,
                    erasure_id=erasure_id,
                    requested_at=now,
                    part=part,
                    parts=len(aliases),
                ),
            ),
        )
    pending = erasure_acks.record_requested(session, erasure_id, len(aliases), now)
    return {
        "erasure_id": erasure_id,
        "erased_at": domain.iso(now),
        "customer_ids": len(aliases),
        "pending_services": pending,
    }


def erasure_audit(session: Session, erasure_id: str) -> list[dict[str, Any]]:
    return ProfileRepository(session).audit_of([f"erased:{erasure_id}"])


def audit_trail(session: Session, profile_id: str) -> list[dict[str, Any]]:
    """Audit entries of a profile and of every customer id merged into it."""
    repo = ProfileRepository(session)
    return repo.audit_of(sorted({profile_id, *repo.aliases_of(profile_id)}))


def tag_counts(session: Session) -> list[tuple[str, int, int, int]]:
    return ProfileRepository(session).tag_counts()


def tag_rules(session: Session) -> list[dict[str, Any]]:
    return ProfileRepository(session).tag_rules()
