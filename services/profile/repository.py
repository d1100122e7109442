"""Every query the profile service makes (SQLAlchemy Core for the bulk paths)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from services.profile.domain import OrderContribution, OrderRecord, Profile, Scores
from services.profile.models import (
    AuditEntry,
    ContactPoint,
    ProfileAlias,
    ProfileInteraction,
    ProfileOrder,
    ProfileScores,
    ProfileSegment,
    ProfileTag,
    TagRule,
    Tombstone,
)
from services.profile.models import Profile as ProfileTable
from services.profile.storage import (
    decode_contribution,
    decode_scores,
    encode_scores,
    order_rows,
    profile_rows,
    stored_profile,
)
from shared.db import (
    chunks,
    driver_connection,
    executemany,
    insert_sql,
    rows_of,
    select_in,
)
from shared.outbox import add_raw_to_outbox, drop_from_outbox

P = cast(Table, ProfileTable.__table__)
A = cast(Table, ProfileAlias.__table__)
C = cast(Table, ContactPoint.__table__)
T = cast(Table, ProfileTag.__table__)
S = cast(Table, ProfileSegment.__table__)
OR = cast(Table, ProfileOrder.__table__)
IX = cast(Table, ProfileInteraction.__table__)
R = cast(Table, TagRule.__table__)
TS = cast(Table, Tombstone.__table__)
AU = cast(Table, AuditEntry.__table__)
SC = cast(Table, ProfileScores.__table__)

CHUNK = 2000

#: One expanding parameter instead of a bound literal per value: the statement compiles
#: once and stays cached (building 500 literals cost more than the query itself).
IDS: BindParameter[Any] = bindparam("ids", expanding=True)


def _executemany(
    session: Session | Connection,
    table: Table,
    sql: str,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
) -> None:
    """A driver-level executemany of dict rows (the consumer writes thousands of rows per
    batch, and SQLAlchemy's per-row parameter handling cost more than SQLite's work); a
    batch's rows mostly share their times."""
    executemany(session, table, sql, columns, rows_of(rows, columns), repeated=_TIMES)


_TIMES = ("created_at", "updated_at")


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(value: str | bytes) -> Any:
    return orjson.loads(value)


#: The profile a customer id belongs to (its own, or the survivor it merged into) with its
#: scores part, by driver placeholder mark: the GET path's only query, run at the driver
#: level (statement construction and compilation cost more than the read itself).
_BY_CUSTOMER = {
    mark: "SELECT p.profile_id, p.doc, s.scores FROM profiles p JOIN profile_aliases a "
    "ON a.profile_id = p.profile_id LEFT JOIN profile_scores s "
    f"ON s.profile_id = p.profile_id WHERE a.customer_id = {mark}"
    for mark in ("?", "%s")
}


def _profile_by_customer(dbapi_connection: Any, mark: str, customer_id: str) -> ProfileRow | None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(_BY_CUSTOMER[mark], (customer_id,))
        row = cursor.fetchone()
    finally:
        cursor.close()
    return None if row is None else ProfileRow(row[0], stored_profile(row[1], row[2]))


def read_profile_by_customer(engine: Engine, customer_id: str) -> ProfileRow | None:
    """The GET path's read on a pooled connection, outside any session: the p99 target
    leaves no room for the ORM's overhead."""
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    connection = engine.raw_connection()
    try:
        return _profile_by_customer(connection, mark, customer_id)
    finally:
        connection.close()


@dataclass(slots=True)
class ProfileRow:
    profile_id: str
    profile: Profile
    #: the searched columns as stored (province, city): unchanged ones are not rewritten
    indexed: tuple[Any, ...] = ()


#: the searched columns of profiles, taken from the profile (``Profile.region``)
INDEXED = ("province", "city")


class ProfileRepository:
    """Takes a Session (writes, in the caller's unit of work) or a bare Connection (the
    hot read path: a pooled connection without a session is several times cheaper)."""

    def __init__(self, session: Session | Connection) -> None:
        self.session = session

    # profiles and aliases

    def aliases(self, customer_ids: Iterable[str]) -> dict[str, str]:
        sql = "SELECT customer_id, profile_id FROM profile_aliases WHERE customer_id IN ({marks})"
        return dict(select_in(self.session, sql, customer_ids, size=CHUNK))

    def aliases_of(self, profile_id: str) -> list[str]:
        return list(
            self.session.execute(
                select(A.c.customer_id).where(A.c.profile_id == profile_id)
            ).scalars()
        )

    def profiles(
        self, profile_ids: Iterable[str], with_scores: bool = True
    ) -> dict[str, ProfileRow]:
        """Profiles by id, read at the driver level (a batch loads thousands); without
        ``with_scores`` their scores part is left empty (the caller attaches it)."""
        ids = list(profile_ids)
        found: dict[str, ProfileRow] = {}
        if not ids:
            return found
        scores_column = "s.scores" if with_scores else "NULL"
        join = "LEFT JOIN profile_scores s ON s.profile_id = p.profile_id " if with_scores else ""
        sql = (
            f"SELECT p.profile_id, p.doc, {scores_column}, "
            f"{', '.join('p.' + c for c in INDEXED)} FROM profiles p {join}"
            "WHERE p.profile_id IN ({marks})"
        )
        for pid, doc, scores, *indexed in select_in(self.session, sql, ids, size=CHUNK):
            found[pid] = ProfileRow(pid, stored_profile(doc, scores), tuple(indexed))
        return found

    def scores(self, profile_ids: Iterable[str]) -> dict[str, Scores]:
        """The scores part of profiles whose document is not needed (segment changes)."""
        ids = list(profile_ids)
        found: dict[str, Scores] = {pid: Scores() for pid in ids}
        sql = "SELECT profile_id, scores FROM profile_scores WHERE profile_id IN ({marks})"
        for pid, scores in select_in(self.session, sql, ids, size=CHUNK):
            found[pid] = decode_scores(loads(scores))
        return found

    def save_scores(self, scores: Mapping[str, Scores]) -> None:
        """Insert or replace the scores part of these profiles (with the two columns
        searched by lifecycle stage and RFM segment)."""
        rows = []
        for pid, part in scores.items():
            snapshot = part.snapshot or {}
            rows.append(
                {
                    "profile_id": pid,
                    "scores": dumps(encode_scores(part)),
                    "lifecycle_stage": snapshot.get("lifecycle_stage"),
                    "rfm_segment": snapshot.get("rfm_segment"),
                }
            )
        _executemany(
            self.session,
            SC,
            "INSERT INTO profile_scores (profile_id, scores, lifecycle_stage, rfm_segment) "
            "VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (profile_id) DO UPDATE SET "
            "scores = excluded.scores, lifecycle_stage = excluded.lifecycle_stage, "
            "rfm_segment = excluded.rfm_segment",
            rows,
            ("profile_id", "scores", "lifecycle_stage", "rfm_segment"),
        )

    def profile_by_customer(self, customer_id: str) -> ProfileRow | None:
        """The profile a customer id belongs to (its own, or the survivor it merged into),
        in the caller's transaction."""
        connection, mark = driver_connection(self.session)
        return _profile_by_customer(connection.connection, mark, customer_id)

    def insert_profiles(self, profiles: Mapping[str, Profile], now: datetime) -> None:
        """New profiles (their scores part is saved apart: save_scores)."""
        rows = [{**row, "created_at": now} for row in profile_rows(profiles, now)]
        columns = ("profile_id", "doc", *INDEXED, "created_at", "updated_at")
        _executemany(self.session, P, insert_sql(P, columns), rows, columns)

    def update_profiles(
        self,
        profiles: Mapping[str, Profile],
        now: datetime,
        indexed_before: dict[str, tuple[Any, ...]] | None = None,
    ) -> None:
        """Write profiles back (not their scores part: save_scores); rows whose searched
        columns did not change write the document alone (SQLite then leaves the four
        indexes alone)."""
        if not profiles:
            return
        rows = profile_rows(profiles, now)
        before = indexed_before or {}
        full, doc_only = [], []
        for r in rows:
            if before.get(r["profile_id"]) == tuple(r[name] for name in INDEXED):
                doc_only.append(r)
            else:
                full.append(r)
        if doc_only:
            _executemany(
                self.session,
                P,
                "UPDATE profiles SET doc = {mark}, updated_at = {mark} WHERE profile_id = {mark}",
                doc_only,
                ("doc", "updated_at", "profile_id"),
            )
        if full:
            columns = ("doc", "updated_at", *INDEXED, "profile_id")
            sets = ", ".join(f"{c} = {{mark}}" for c in columns[:-1])
            _executemany(
                self.session,
                P,
                f"UPDATE profiles SET {sets} WHERE profile_id = {{mark}}",
                full,
                columns,
            )

    def delete_profiles(self, profile_ids: list[str]) -> None:
        for table in (P, SC, T, S):
            self.session.execute(delete(table).where(table.c.profile_id.in_(profile_ids)))

    def insert_aliases(self, rows: list[dict[str, str]]) -> None:
        columns = ("customer_id", "profile_id")
        _executemany(self.session, A, insert_sql(A, columns), rows, columns)

    def repoint(self, old_ids: list[str], survivor_id: str) -> None:
        """Move aliases, orders and interactions of merged profiles to the survivor."""
        for table in (A, OR, IX):
            self.session.execute(
                update(table).where(table.c.profile_id.in_(old_ids)).values(profile_id=survivor_id)
            )

    # tombstones

    def any_tombstone(self) -> bool:
        return self.session.execute(select(TS.c.customer_hash).limit(1)).first() is not None

    def tombstones(self, hashes: Iterable[str]) -> dict[str, datetime]:
        ids = list(hashes)
        found: dict[str, datetime] = {}
        for chunk in chunks(ids, CHUNK):
            found.update(
                self.session.execute(
                    select(TS.c.customer_hash, TS.c.erased_at).where(TS.c.customer_hash.in_(IDS)),
                    {"ids": list(chunk)},
                ).all()
            )
        return found

    def add_tombstones(self, rows: list[dict[str, Any]]) -> None:
        existing = set(self.tombstones(r["customer_hash"] for r in rows))
        fresh = [r for r in rows if r["customer_hash"] not in existing]
        if fresh:
            self.session.execute(insert(TS), fresh)

    # contact points

    def contact_points(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str, str], bool]:
        """Known (kind, value, customer id) -> verified, for the given (kind, value) pairs."""
        values = sorted({v for _, v in keys})
        found: dict[tuple[str, str, str], bool] = {}
        for chunk in chunks(values, CHUNK):
            for kind, value, cid, verified in self.session.execute(
                select(C.c.kind, C.c.value, C.c.customer_id, C.c.verified).where(
                    C.c.value.in_(IDS)
                ),
                {"ids": list(chunk)},
            ).all():
                found[(kind, value, cid)] = bool(verified)
        return found

    def insert_contact_points(self, rows: list[dict[str, Any]]) -> None:
        columns = ("kind", "value", "customer_id", "verified")
        _executemany(self.session, C, insert_sql(C, columns), rows, columns)

    def verify_contact_points(self, keys: list[tuple[str, str, str]]) -> None:
        if not keys:
            return
        self.session.execute(
            update(C)
            .where(
                C.c.kind == bindparam("b_kind"),
                C.c.value == bindparam("b_value"),
                C.c.customer_id == bindparam("b_cid"),
            )
            .values(verified=True),
            [{"b_kind": k, "b_value": v, "b_cid": c} for k, v, c in keys],
        )

    def contact_holders(self, kind: str, value: str) -> list[tuple[str, bool, str]]:
        """(customer id, verified, profile id) of every customer id holding a contact."""
        return [
            (cid, bool(verified), pid)
            for cid, verified, pid in self.session.execute(
                select(C.c.customer_id, C.c.verified, A.c.profile_id)
                .join(A, A.c.customer_id == C.c.customer_id)
                .where(C.c.kind == kind, C.c.value == value)
                .order_by(C.c.customer_id)
            ).all()
        ]

    def delete_contact_points(self, customer_ids: list[str]) -> None:
        self.session.execute(delete(C).where(C.c.customer_id.in_(customer_ids)))

    # orders and interactions

    def orders(self, order_ids: Iterable[str]) -> dict[str, tuple[str, str, OrderContribution]]:
        """order id -> (profile id, version, contribution)."""
        sql = (
            "SELECT order_id, profile_id, version, contribution FROM profile_orders "
            "WHERE order_id IN ({marks})"
        )
        return {
            oid: (pid, version, decode_contribution(loads(contribution)))
            for oid, pid, version, contribution in select_in(
                self.session, sql, list(order_ids), size=CHUNK
            )
        }

    def contributions_of(self, profile_id: str) -> list[OrderContribution]:
        return [
            decode_contribution(loads(c))
            for c in self.session.execute(
                select(OR.c.contribution).where(OR.c.profile_id == profile_id)
            ).scalars()
        ]

    def orders_of(self, profile_id: str) -> list[OrderRecord]:
        return [
            OrderRecord(oid, cid, v, decode_contribution(loads(c)))
            for oid, cid, v, c in self.session.execute(
                select(OR.c.order_id, OR.c.customer_id, OR.c.version, OR.c.contribution)
                .where(OR.c.profile_id == profile_id)
                .order_by(OR.c.order_id)
            ).all()
        ]

    def insert_orders(self, orders: Iterable[tuple[str, OrderRecord]]) -> None:
        """New (profile id, order) rows."""
        columns = ("order_id", "profile_id", "customer_id", "version", "contribution")
        _executemany(self.session, OR, insert_sql(OR, columns), order_rows(orders), columns)

    def update_orders(self, orders: Iterable[tuple[str, OrderRecord]]) -> None:
        """Newer versions of known orders (and the profile that holds each now)."""
        _executemany(
            self.session,
            OR,
            "UPDATE profile_orders SET profile_id = {mark}, version = {mark}, "
            "contribution = {mark} WHERE order_id = {mark}",
            order_rows(orders),
            ("profile_id", "version", "contribution", "order_id"),
        )

    def interaction_ids(self, ids: Iterable[str]) -> set[str]:
        sql = "SELECT interaction_id FROM profile_interactions WHERE interaction_id IN ({marks})"
        return {row[0] for row in select_in(self.session, sql, ids, size=CHUNK)}

    def insert_interactions(self, rows: list[dict[str, Any]]) -> None:
        """Consumed interactions (``summary``: the event's other fields, stored as JSON)."""
        if rows:
            self.session.execute(insert(IX), [{**r, "summary": dumps(r["summary"])} for r in rows])

    def interactions_of(self, profile_id: str) -> list[dict[str, Any]]:
        return [
            {"interaction_id": iid, "kind": kind, "occurred_at": at, **loads(summary)}
            for iid, kind, at, summary in self.session.execute(
                select(IX.c.interaction_id, IX.c.kind, IX.c.occurred_at, IX.c.summary)
                .where(IX.c.profile_id == profile_id)
                .order_by(IX.c.occurred_at)
            ).all()
        ]

    def delete_history(self, profile_id: str) -> None:
        self.session.execute(delete(OR).where(OR.c.profile_id == profile_id))
        self.session.execute(delete(IX).where(IX.c.profile_id == profile_id))
        self.session.execute(delete(A).where(A.c.profile_id == profile_id))

    # tags and segment memberships

    def set_tags(self, profile_id: str, source: str, tags: Iterable[str]) -> None:
        """Make a profile's tags of one source exactly ``tags``; rows that stay are left
        alone (only the difference is deleted and inserted)."""
        wanted = set(tags)
        stored = set(
            self.session.execute(
                select(T.c.tag).where(T.c.profile_id == profile_id, T.c.source == source)
            ).scalars()
        )
        self.change_tags(
            [(profile_id, t, source) for t in sorted(wanted - stored)],
            [(profile_id, t, source) for t in sorted(stored - wanted)],
        )

    def change_tags(
        self,
        added: list[tuple[str, str, str]],
        removed: list[tuple[str, str, str]],
    ) -> None:
        """Insert and delete (profile id, tag, source) rows."""
        if removed:
            self.session.execute(
                delete(T).where(
                    T.c.profile_id == bindparam("b_pid"),
                    T.c.tag == bindparam("b_tag"),
                    T.c.source == bindparam("b_source"),
                ),
                [{"b_pid": p, "b_tag": t, "b_source": s} for p, t, s in removed],
            )
        if added:
            self.session.execute(
                insert(T), [{"profile_id": p, "tag": t, "source": s} for p, t, s in added]
            )

    def tag_counts(self) -> list[tuple[str, int, int, int]]:
        """(tag, profiles, manual, by rule) for every tag in use."""
        rows = self.session.execute(
            select(
                T.c.tag,
                func.count(func.distinct(T.c.profile_id)),
                func.sum(case((T.c.source == "manual", 1), else_=0)),
                func.sum(case((T.c.source == "rule", 1), else_=0)),
            )
            .group_by(T.c.tag)
            .order_by(T.c.tag)
        ).all()
        return [(t, int(n), int(m or 0), int(r or 0)) for t, n, m, r in rows]

    def set_segments(self, memberships: dict[str, list[str]]) -> None:
        ids = list(memberships)
        for chunk in chunks(ids, CHUNK):
            self.session.execute(delete(S).where(S.c.profile_id.in_(IDS)), {"ids": list(chunk)})
        rows = [{"profile_id": p, "segment": s} for p, segs in memberships.items() for s in segs]
        if rows:
            self.session.execute(insert(S), rows)

    # tag rules

    def tag_rules(self) -> list[dict[str, Any]]:
        return [
            {
                "rule_id": rid,
                "tag": tag,
                "rule": loads(rule),
                "description": description,
                "created_at": created,
            }
            for rid, tag, rule, description, created in self.session.execute(
                select(R.c.rule_id, R.c.tag, R.c.rule, R.c.description, R.c.created_at).order_by(
                    R.c.tag
                )
            ).all()
        ]

    def add_tag_rule(self, row: dict[str, Any]) -> None:
        self.session.execute(insert(R), [{**row, "rule": dumps(row["rule"])}])

    def delete_tag_rule(self, rule_id: str) -> str | None:
        tag = self.session.execute(select(R.c.tag).where(R.c.rule_id == rule_id)).scalar()
        if tag is not None:
            self.session.execute(delete(R).where(R.c.rule_id == rule_id))
        return tag

    def all_profile_ids(self, after: str | None, limit: int) -> list[str]:
        query = select(P.c.profile_id).order_by(P.c.profile_id).limit(limit)
        if after is not None:
            query = query.where(P.c.profile_id > after)
        return list(self.session.execute(query).scalars())

    # search

    def search(
        self,
        *,
        profile_ids: set[str] | None,
        tag: str | None,
        segment: str | None,
        province: str | None,
        city: str | None,
        lifecycle_stage: str | None,
        rfm_segment: str | None,
        after: str | None,
        limit: int,
    ) -> list[ProfileRow]:
        query = (
            select(P.c.profile_id, P.c.doc, SC.c.scores)
            .outerjoin(SC, SC.c.profile_id == P.c.profile_id)
            .order_by(P.c.profile_id)
        )
        conditions: list[ColumnElement[bool]] = []
        if profile_ids is not None:
            conditions.append(P.c.profile_id.in_(sorted(profile_ids)))
        if tag:
            conditions.append(P.c.profile_id.in_(select(T.c.profile_id).where(T.c.tag == tag)))
        if segment:
            conditions.append(
                P.c.profile_id.in_(select(S.c.profile_id).where(S.c.segment == segment))
            )
        for column, value in (
            (P.c.province, province),
            (P.c.city, city),
            (SC.c.lifecycle_stage, lifecycle_stage),
            (SC.c.rfm_segment, rfm_segment),
        ):
            if value:
                conditions.append(column == value)
        if after is not None:
            conditions.append(P.c.profile_id > after)
        if conditions:
            query = query.where(and_(*conditions))
        return [
            ProfileRow(pid, stored_profile(doc, scores))
            for pid, doc, scores in self.session.execute(query.limit(limit)).all()
        ]

    def profiles_by_contact(self, kind: str, value: str) -> set[str]:
        return set(
            self.session.execute(
                select(A.c.profile_id)
                .join(C, C.c.customer_id == A.c.customer_id)
                .where(C.c.kind == kind, C.c.value == value)
            ).scalars()
        )

    def add_events(self, rows: Sequence[tuple[str, str | None, bytes]], now: datetime) -> None:
        add_raw_to_outbox(self.session, rows, now)

    def drop_pending_events(self, keys: list[str]) -> None:
        """Erasure: events about these customers not yet published are not published."""
        drop_from_outbox(self.session, keys)

    # audit and merges

    def audit(self, *, at: datetime, actor: str, action: str, subject: str, detail: Any) -> None:
        self.session.execute(
            insert(AU),
            [
                {
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "detail": dumps(detail),
                }
            ],
        )

    def audit_of(self, subjects: list[str]) -> list[dict[str, Any]]:
        return [
            {"at": at, "actor": actor, "action": action, "subject": subject, "detail": loads(d)}
            for at, actor, action, subject, d in self.session.execute(
                select(AU.c.at, AU.c.actor, AU.c.action, AU.c.subject, AU.c.detail)
                .where(AU.c.subject.in_(subjects))
                .order_by(AU.c.id)
            ).all()
        ]

    def scrub_audit(self, subjects: list[str], replacement: str) -> None:
        """Erasure: keep that things happened, drop who and what (the personal data)."""
        self.session.execute(
            update(AU).where(AU.c.subject.in_(subjects)).values(subject=replacement, detail="{}")
        )
