"""Launching a campaign: snapshot the audience, decide per customer, queue the messages.

A launch walks the audience projection in customer-id order, ``launch_chunk_size``
customers per transaction. Each transaction writes, together:

- one ``entries`` row per customer of the chunk that the audience selects (contacted,
  held out, or excluded with its reason), unique per (campaign, customer, entry);
- one ``campaign.message_requested`` outbox row per contacted customer;
- the run's cursor (the last customer id of the chunk).

So a crash loses at most the chunk in flight (rolled back: no entry, no message), and a
relaunch resumes after the cursor; a finished launch is not repeated. Nobody can get a
second message from one run: the cursor skips handled customers, the entry rows are
checked before writing, and the unique constraint rejects a concurrent double launch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.campaign.config import Settings
from services.campaign.deleted_segments import refuse_if_segment_deleted
from services.campaign.models import Campaign, LaunchRun
from services.campaign.projection_repository import Projections
from services.campaign.repository import Campaigns, Entries, PastEntry
from services.campaign.rules import Predicate, compile_rule
from services.campaign.schemas import AudienceSpec
from services.campaign.skips import record as record_skips
from services.campaign.skips import skip_row
from services.campaign.targeting import (
    CUSTOMER_VARIABLES,
    MAX_CAP_PERIOD_DAYS,
    CapDefaults,
    Decision,
    compile_template,
    decide,
    template_variables,
)
from shared import topics
from shared.bus import add_raw_to_outbox
from shared.db import Database
from shared.errors import Conflict, NotFound
from shared.events import SCHEMA_VERSION, ensure_aware, utcnow


def stable_uuid(text: str) -> str:
    """A deterministic UUID (version 8, RFC 9562) from a BLAKE2b hash of ``text``."""
    h = bytearray(hashlib.blake2b(text.encode(), digest_size=16).digest())
    h[6] = (h[6] & 0x0F) | 0x80
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def message_id(campaign_id: str, customer_id: str, entry_no: int) -> str:
    """Deterministic: a gateway seeing the same id twice knows it is the same message."""
    return stable_uuid(f"message/{campaign_id}/{customer_id}/{entry_no}")


def audience_predicate(spec: Mapping[str, Any] | None) -> Predicate:
    """A predicate over audience rows for a stored audience spec (None: everyone)."""
    if not spec:
        return lambda row: True
    audience = AudienceSpec.model_validate(spec)
    if audience.segment_id is not None:
        segment_id = audience.segment_id
        return lambda row: segment_id in (row.get("segments") or ())
    assert audience.rule is not None
    return compile_rule(audience.rule)


def cap_defaults(settings: Settings) -> CapDefaults:
    return CapDefaults(settings.default_max_contacts, settings.default_period_days)


@dataclass
class MessageBuilder:
    """Encodes ``campaign.message_requested`` envelopes without a model round trip per row.

    The dict has exactly the wire shape of :class:`shared.events.MessageRequestedEvent`
    (a test decodes it with the shared models).
    """

    campaign: Campaign
    source: str = "campaign"
    _campaign_id: str = field(init=False)
    _template_id: str | None = field(init=False)
    _render: Callable[[Mapping[str, Any]], str] = field(init=False)
    _now: datetime | None = field(init=False, default=None)
    _now_text: str = field(init=False, default="")
    _static: dict[str, str] = field(init=False)
    _customer_fields: list[str] = field(init=False)

    def __post_init__(self) -> None:
        # plain attributes: ORM attribute access per message adds up over millions
        self._campaign_id = self.campaign.campaign_id
        self._template_id = self.campaign.content.get("template_id")
        self._render = compile_template(self.campaign.content["template"])
        self._static = dict(self.campaign.content.get("variables") or {})
        # the message carries the variables its template uses (and the campaign-wide
        # ones, for the gateway's own template), not every per-customer field
        template = self.campaign.content["template"]
        self._customer_fields = sorted(
            (template_variables(template) & CUSTOMER_VARIABLES) - set(self._static)
        )

    def build(
        self, row: Mapping[str, Any], entry_no: int, decision: Decision, now: datetime
    ) -> tuple[str, bytes]:
        customer_id = row["customer_id"]
        variables: dict[str, Any] = {name: row.get(name) for name in self._customer_fields}
        variables.update(self._static)
        msg_id = message_id(self._campaign_id, customer_id, entry_no)
        if now is not self._now:
            self._now, self._now_text = now, now.isoformat()
        envelope = {
            "event_id": stable_uuid(f"event/{msg_id}"),
            "schema_version": SCHEMA_VERSION,
            "occurred_at": self._now_text,
            "source": self.source,
            "key": customer_id,
            "type": "campaign.message_requested",
            "data": {
                "message_id": msg_id,
                "campaign_id": self._campaign_id,
                "customer_id": customer_id,
                "channel": decision.channels[0],
                "fallback_channels": list(decision.channels[1:]),
                "template": self._template_id,
                "content": self._render(variables),
                "variables": variables,
                "not_before": decision.not_before.isoformat() if decision.not_before else None,
            },
        }
        return msg_id, orjson.dumps(envelope)


@dataclass
class Tally:
    targeted: int = 0
    sent: int = 0
    deferred: int = 0
    holdout: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    last_customer_id: str | None = None

    def count(self, outcome: str, reason: str | None, deferred: bool, n: int = 1) -> None:
        """``n`` entries of one outcome; the launch, its summary and the report all count here."""
        self.targeted += n
        if outcome == "sent":
            self.sent += n
            if deferred:
                self.deferred += n
        elif outcome == "holdout":
            self.holdout += n
        else:
            assert reason is not None
            self.excluded[reason] = self.excluded.get(reason, 0) + n

    def add(self, decision: Decision) -> None:
        self.count(decision.outcome, decision.reason, decision.not_before is not None)

    @classmethod
    def of_entries(cls, counts: Iterable[Sequence[Any]]) -> Tally:
        """From ``(outcome, reason, deferred, count)`` rows (:meth:`Entries.counts`)."""
        tally = cls()
        for outcome, reason, deferred, n in counts:
            tally.count(outcome, reason, bool(deferred), int(n))
        return tally


class EntryBatch:
    """Customers entering campaigns, decided together: one read, one write.

    It reads the customers' earlier entries into the campaigns and their recent contacts
    once, and writes the entries and their message requests once (:meth:`write`). Each
    decision sees the ones made before it in the batch, exactly as if each entry had been
    written before the next was decided: an entry bars the customer's re-entry into that
    campaign, and a message counts toward the frequency cap of every later decision.

    ``customer_ids`` lists the customer of every decision the batch will make (a customer
    deciding twice is listed twice).
    """

    def __init__(
        self,
        session: Session,
        settings: Settings,
        now: datetime,
        campaign_ids: Sequence[str],
        customer_ids: Sequence[str],
    ) -> None:
        self.session, self.now = session, now
        entries = Entries(session)
        self.earlier = entries.for_customers(campaign_ids, customer_ids)
        self.recent = entries.recent_contacts(
            customer_ids, now - timedelta(days=MAX_CAP_PERIOD_DAYS)
        )
        # a launch chunk decides once per customer: it need not remember its own decisions
        self.remember = len(set(customer_ids)) < len(customer_ids)
        self.defaults = cap_defaults(settings)
        self.assume_consent = settings.assume_consent_without_policy
        self.entry_rows: list[tuple[Any, ...]] = []
        self.outbox_rows: list[tuple[str, str | None, bytes]] = []
        #: trigger occurrences not entered (re-entry rules), counted in the report
        self.skip_rows: list[dict[str, Any]] = []

    def enter(
        self,
        campaign: Campaign,
        rows: Sequence[Mapping[str, Any]],
        *,
        run_no: int,
        trigger_keys: Sequence[str | None] | None = None,
        builder: MessageBuilder | None = None,
    ) -> Tally:
        """Decide for each customer row (``trigger_keys``: the occurrence of each, if any).

        ``rows`` are audience rows already selected by the campaign's audience. A customer
        already entered in this run, or by the same trigger occurrence, or barred by the
        re-entry / cooldown rules, is skipped (no entry, no message).
        """
        tally = Tally()
        if not rows:
            return tally
        builder = builder or MessageBuilder(campaign)
        now, earlier, recent = self.now, self.earlier, self.recent
        defaults, assume_consent = self.defaults, self.assume_consent
        remember = self.remember
        entry_rows, outbox_rows = self.entry_rows, self.outbox_rows
        cooldown = timedelta(days=campaign.cooldown_days)
        campaign_id, channels = campaign.campaign_id, list(campaign.channels)
        holdout_share, reentry_allowed = campaign.holdout_share, campaign.reentry_allowed
        keys = trigger_keys if trigger_keys is not None else [None] * len(rows)
        for row, trigger_key in zip(rows, keys, strict=True):
            customer_id = row["customer_id"]
            previous = earlier.get((campaign_id, customer_id))
            if previous:
                if run_no and any(p.run_no == run_no for p in previous):
                    continue
                if trigger_key is not None and any(p.trigger_key == trigger_key for p in previous):
                    continue
                if not reentry_allowed:
                    self._skip(campaign_id, customer_id, trigger_key, "reentry_not_allowed")
                    continue
                last = max(ensure_aware(p.entered_at) for p in previous)
                if now - last < cooldown:
                    self._skip(campaign_id, customer_id, trigger_key, "cooldown")
                    continue
            entry_no = max(p.entry_no for p in previous) + 1 if previous else 0
            decision = decide(
                campaign_id=campaign_id,
                customer_id=customer_id,
                erased=bool(row.get("erased")),
                policy=row.get("contact_policy"),
                campaign_channels=channels,
                holdout_share=holdout_share,
                recent_contacts=recent.get(customer_id, ()),
                now=now,
                cap_defaults=defaults,
                assume_consent=assume_consent,
            )
            tally.add(decision)
            msg_id = None
            if decision.outcome == "sent":
                msg_id, value = builder.build(row, entry_no, decision, now)
                outbox_rows.append((topics.CAMPAIGN_MESSAGES, customer_id, value))
            if remember:
                self._remember(
                    campaign_id,
                    customer_id,
                    decision,
                    PastEntry(entry_no, run_no, now, trigger_key),
                )
            # in ENTRY_COLUMNS order
            entry_rows.append(
                (
                    campaign_id,
                    customer_id,
                    entry_no,
                    run_no,
                    now,
                    decision.outcome,
                    decision.reason,
                    msg_id,
                    decision.channels[0] if decision.channels else None,
                    decision.not_before,
                    trigger_key,
                )
            )
        return tally

    def _skip(
        self, campaign_id: str, customer_id: str, trigger_key: str | None, reason: str
    ) -> None:
        if trigger_key is not None:
            self.skip_rows.append(skip_row(campaign_id, customer_id, trigger_key, reason, self.now))

    def _remember(
        self, campaign_id: str, customer_id: str, decision: Decision, entry: PastEntry
    ) -> None:
        self.earlier.setdefault((campaign_id, customer_id), []).append(entry)
        if decision.outcome == "sent":
            self.recent.setdefault(customer_id, []).append(entry.entered_at)

    def write(self) -> None:
        """The batch's entries and message requests, each in one executemany."""
        Entries(self.session).add_many(self.entry_rows)
        add_raw_to_outbox(self.session, self.outbox_rows)
        record_skips(self.session, self.skip_rows)
        self.entry_rows, self.outbox_rows, self.skip_rows = [], [], []


def enter_customers(
    session: Session,
    campaign: Campaign,
    rows: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    settings: Settings,
    run_no: int,
    builder: MessageBuilder | None = None,
) -> Tally:
    """Decide for each customer row and write entries + outbox rows (see :class:`EntryBatch`)."""
    if not rows:
        return Tally()
    batch = EntryBatch(
        session, settings, now, [campaign.campaign_id], [r["customer_id"] for r in rows]
    )
    tally = batch.enter(campaign, rows, run_no=run_no, builder=builder)
    batch.write()
    return tally


@dataclass
class LaunchOutcome:
    campaign_id: str
    status: str
    run_no: int | None
    resumed: bool
    already_launched: bool
    tally: Tally


ChunkHook = Callable[[int], None]

LAUNCHABLE = ("draft", "scheduled", "running")


def launch(
    db: Database,
    campaign_id: str,
    settings: Settings,
    *,
    now: Callable[[], datetime] = utcnow,
    new_run: bool = False,
    after_chunk: ChunkHook | None = None,
) -> LaunchOutcome:
    """Launch (or resume) a campaign; see the module docstring. Commits per chunk.

    ``new_run`` starts the next run of a recurring campaign (the scheduler's call); without
    it a finished launch is reported, not repeated. ``after_chunk`` is called with the
    number of chunks committed so far (tests use it to simulate a crash). A launch racing
    another one of the same campaign stops with a 409 (the unique keys reject its writes).
    """
    try:
        return _launch(db, campaign_id, settings, now=now, new_run=new_run, after_chunk=after_chunk)
    except IntegrityError as exc:
        raise Conflict("another launch of this campaign is running; retry later") from exc


def _launch(
    db: Database,
    campaign_id: str,
    settings: Settings,
    *,
    now: Callable[[], datetime] = utcnow,
    new_run: bool = False,
    after_chunk: ChunkHook | None = None,
) -> LaunchOutcome:
    with db.unit_of_work() as session:
        repo = Campaigns(session)
        campaign = repo.get(campaign_id, for_update=not db.is_sqlite)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        if campaign.status not in LAUNCHABLE:
            raise Conflict(
                f"a {campaign.status} campaign cannot be launched", status_now=campaign.status
            )
        refuse_if_segment_deleted(session, campaign)
        started = now()
        if campaign.status != "running":
            campaign.status = "running"
            campaign.launched_at = started
            campaign.updated_at = started
            if campaign.schedule.get("type") != "recurring":
                campaign.next_run_at = None
        if campaign.schedule.get("type") == "recurring" and not new_run:
            # launched by hand: this is the current run, the schedule continues after it
            due = campaign.next_run_at
            if due is None or ensure_aware(due) <= started:
                campaign.next_run_at = started + timedelta(
                    hours=int(campaign.schedule["every_hours"])
                )
        if campaign.trigger:
            # a triggered campaign is armed: customers enter on their transitions
            return LaunchOutcome(campaign_id, "running", None, False, False, Tally())
        runs = repo.runs(campaign_id)
        open_run = next((r for r in runs if r.finished_at is None), None)
        resumed = open_run is not None
        if open_run is None:
            if runs and not new_run:
                return LaunchOutcome(
                    campaign_id, campaign.status, runs[-1].run_no, False, True, Tally()
                )
            open_run = repo.add_run(
                LaunchRun(
                    campaign_id=campaign_id,
                    run_no=(runs[-1].run_no + 1) if runs else 1,
                    started_at=started,
                    cursor=None,
                )
            )
        run_no, cursor = open_run.run_no, open_run.cursor
        predicate = audience_predicate(campaign.audience)
        builder = MessageBuilder(campaign)

    total = Tally()
    chunks = 0
    # one connection for the whole launch, one transaction per chunk on it
    with db.engine.connect() as connection:
        bulk_wal = db.is_sqlite and settings.sqlite_launch_checkpoint_pages > 0
        if bulk_wal:
            # a launch writes gigabytes: checkpoint the WAL rarely, not at every commit
            pages = int(settings.sqlite_launch_checkpoint_pages)
            connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {pages}")
            connection.commit()  # end the autobegun transaction: each chunk owns its own
        try:
            while True:
                done, tally = _launch_chunk(
                    connection, campaign, run_no, cursor, predicate, builder, settings, now
                )
                if done:
                    break
                cursor = tally.last_customer_id
                _merge(total, tally)
                chunks += 1
                if after_chunk is not None:
                    after_chunk(chunks)
        finally:
            if bulk_wal:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA wal_autocheckpoint = 1000")
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                connection.commit()
    return LaunchOutcome(campaign_id, "running", run_no, resumed, False, total)


def _launch_chunk(
    connection: Connection,
    campaign: Campaign,
    run_no: int,
    cursor: str | None,
    predicate: Predicate,
    builder: MessageBuilder,
    settings: Settings,
    now: Callable[[], datetime],
) -> tuple[bool, Tally]:
    """One chunk in one transaction: entries, outbox rows and the cursor, or nothing."""
    with Session(bind=connection, expire_on_commit=False) as session, session.begin():
        page = Projections(session).audience_page(cursor, settings.launch_chunk_size)
        run = Campaigns(session).run(campaign.campaign_id, run_no)
        assert run is not None
        if not page:
            run.finished_at = now()
            return True, Tally()
        tally = enter_customers(
            session,
            campaign,
            [r for r in page if predicate(r)],
            now=now(),
            settings=settings,
            run_no=run_no,
            builder=builder,
        )
        tally.last_customer_id = run.cursor = page[-1]["customer_id"]
    return False, tally


def _merge(total: Tally, part: Tally) -> None:
    total.targeted += part.targeted
    total.sent += part.sent
    total.deferred += part.deferred
    total.holdout += part.holdout
    for reason, count in part.excluded.items():
        total.excluded[reason] = total.excluded.get(reason, 0) + count
