"""Queries over what campaign projects from other services' events: the audience (scores,
tags, region, contact policy), customers' orders and receipts, merged ids (aliases) and the
tombstones of erased customers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    Table,
    case,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.orm import Session

from services.campaign.models import (
    AudienceMember,
    CustomerAlias,
    CustomerOrder,
    Entry,
    ErasedCustomer,
    LaunchRun,
    MergedEntry,
    Receipt,
)
from services.campaign.repository import IN_CHUNK, insert_ignoring_duplicates
from shared.db import chunks, select_rows, write_rows
from shared.erasure import TOMBSTONE_KEY_LENGTH, tombstone_key, tombstone_keys
from shared.events import ensure_aware

ORDERS_TABLE = cast(Table, CustomerOrder.__table__)
AUDIENCE_TABLE = cast(Table, AudienceMember.__table__)
#: every column of an audience row, as the dicts the audience projection keeps
AUDIENCE_FIELDS = tuple(AUDIENCE_TABLE.c.keys())
_JSON_KEYS = ("segments", "tags", "contact_policy")

#: The audience columns a launch reads (rule fields, policy).
_AUDIENCE = AudienceMember.__table__.c
# Core columns: a launch reads millions of rows, without ORM row loading
AUDIENCE_COLUMNS = tuple(
    _AUDIENCE[name]
    for name in (
        "customer_id",
        "rfm_segment",
        "lifecycle_stage",
        "r_score",
        "f_score",
        "m_score",
        "value_quadrant",
        "recency_days",
        "frequency",
        "monetary_e4",
        "currency",
        "segments",
        "tags",
        "province",
        "city",
        "contact_policy",
    )
)


class Projections:
    def __init__(self, session: Session) -> None:
        self.session = session

    def audience_rows(self, customer_ids: Sequence[str]) -> dict[str, AudienceMember]:
        found: dict[str, AudienceMember] = {}
        for chunk in chunks(list(dict.fromkeys(customer_ids)), IN_CHUNK):
            for row in self.session.scalars(
                select(AudienceMember).where(AudienceMember.customer_id.in_(chunk))
            ):
                found[row.customer_id] = row
        return found

    def audience_member(self, customer_id: str) -> AudienceMember | None:
        return self.session.get(AudienceMember, customer_id)

    def audience_page(self, after: str | None, limit: int) -> list[dict[str, Any]]:
        """Audience rows (as dicts) in customer id order after ``after`` (keyset pagination).

        A launch reads millions of rows: this goes to the driver's cursor (no per-row
        result processing) and parses the JSON columns with orjson.
        """
        names = [c.key for c in AUDIENCE_COLUMNS]
        sql = f"SELECT {', '.join(names)} FROM audience"
        params: tuple[Any, ...] = (limit,)
        if after is not None:
            sql += " WHERE customer_id > {mark}"
            params = (after, limit)
        fetched = select_rows(self.session, sql + " ORDER BY customer_id LIMIT {mark}", params)
        json_positions = [names.index(k) for k in _JSON_KEYS]
        rows = []
        for record in fetched:
            values = list(record)
            for i in json_positions:
                raw = values[i]
                if isinstance(raw, (str, bytes)):
                    values[i] = orjson.loads(raw)
            rows.append(dict(zip(names, values, strict=True)))
        return rows

    def orders(self, order_ids: Sequence[str]) -> dict[str, CustomerOrder]:
        found: dict[str, CustomerOrder] = {}
        for chunk in chunks(list(dict.fromkeys(order_ids)), IN_CHUNK):
            for row in self.session.scalars(
                select(CustomerOrder).where(CustomerOrder.order_id.in_(chunk))
            ):
                found[row.order_id] = row
        return found

    def order_versions(self, order_ids: Sequence[str]) -> dict[str, tuple[datetime, int, bool]]:
        """Stored orders' ``(version_at, status_rank, valid)``, without loading ORM rows."""
        c = ORDERS_TABLE.c
        found: dict[str, tuple[datetime, int, bool]] = {}
        for chunk in chunks(list(dict.fromkeys(order_ids)), IN_CHUNK):
            query = select(c.order_id, c.version_at, c.status_rank, c.valid)
            for order_id, version_at, rank, valid in self.session.execute(
                query.where(c.order_id.in_(chunk))
            ):
                found[order_id] = (ensure_aware(version_at), rank, bool(valid))
        return found

    def write_orders(self, new: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
        """Insert ``new`` order rows and overwrite ``changed`` ones (each a full row), one
        driver executemany each (``shared.db.write_rows``, bypassing the ORM: call
        :meth:`forget` for the ORM rows this session may hold)."""
        write_rows(self.session, ORDERS_TABLE, new)
        write_rows(self.session, ORDERS_TABLE, changed, key="order_id")

    def audience_records(self, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Whole audience rows as dicts (``AUDIENCE_FIELDS``), without loading ORM rows."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(dict.fromkeys(customer_ids)), IN_CHUNK):
            query = select(AUDIENCE_TABLE).where(AUDIENCE_TABLE.c.customer_id.in_(chunk))
            for row in self.session.execute(query).mappings():
                found[row["customer_id"]] = dict(row)
        return found

    def write_audience(
        self, new: list[dict[str, Any]], changed: list[dict[str, Any]], removed: list[str]
    ) -> None:
        """Insert ``new`` audience rows, overwrite ``changed`` ones (whole rows), delete the
        ``removed`` ids; at the driver, as :meth:`write_orders`."""
        table = AUDIENCE_TABLE
        write_rows(self.session, table, new)
        write_rows(self.session, table, changed, key="customer_id")
        for chunk in chunks(removed, IN_CHUNK):
            self.session.execute(delete(table).where(table.c.customer_id.in_(chunk)))

    def audience_regions(self, customer_ids: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        """Audience rows' ``(province, city)``, without loading ORM rows."""
        c = AUDIENCE_TABLE.c
        found: dict[str, tuple[Any, Any]] = {}
        for chunk in chunks(list(dict.fromkeys(customer_ids)), IN_CHUNK):
            query = select(c.customer_id, c.province, c.city).where(c.customer_id.in_(chunk))
            for customer_id, province, city in self.session.execute(query):
                found[customer_id] = (province, city)
        return found

    def write_regions(
        self, new: dict[str, tuple[Any, Any]], known: dict[str, tuple[Any, Any]], now: datetime
    ) -> None:
        """Audience rows for the ``new`` customers (nothing but their region), and the region
        of the ``known`` ones; at the driver, as :meth:`write_orders`."""
        rows = [
            {
                "customer_id": customer_id,
                "segments": [],
                "tags": [],
                "province": province,
                "city": city,
                "updated_at": now,
            }
            for customer_id, (province, city) in new.items()
        ]
        write_rows(self.session, AUDIENCE_TABLE, rows)
        write_rows(
            self.session,
            AUDIENCE_TABLE,
            [
                {"customer_id": customer_id, "province": province, "city": city}
                for customer_id, (province, city) in known.items()
            ],
            key="customer_id",
        )

    def forget(self, cls: type[Any], keys: set[str], *, deleted: bool = False) -> None:
        """Expire this session's ORM objects of ``cls`` with these primary keys (rows a Core
        statement rewrote: a later access reads them again), or expunge them (``deleted``)."""
        if not keys:
            return
        for instance in list(self.session.identity_map.values()):
            if isinstance(instance, cls):
                identity = inspect(instance).identity
                if identity is not None and identity[0] in keys:
                    if deleted:
                        self.session.expunge(instance)
                    else:
                        self.session.expire(instance)

    def valid_order_count(self, customer_id: str) -> int:
        return int(
            self.session.scalar(
                select(func.count())
                .select_from(CustomerOrder)
                .where(CustomerOrder.customer_id == customer_id, CustomerOrder.valid.is_(True))
            )
            or 0
        )

    def reassign_orders(self, from_ids: Sequence[str], to_id: str) -> None:
        if from_ids:
            self.session.execute(
                update(CustomerOrder)
                .where(CustomerOrder.customer_id.in_(list(from_ids)))
                .values(customer_id=to_id)
            )

    def unpaid_orders(self, created_from: datetime, created_to: datetime) -> list[CustomerOrder]:
        return list(
            self.session.scalars(
                select(CustomerOrder).where(
                    CustomerOrder.status == "created",
                    CustomerOrder.created_at >= created_from,
                    CustomerOrder.created_at <= created_to,
                )
            )
        )

    def add_receipts(self, rows: list[dict[str, Any]]) -> None:
        insert_ignoring_duplicates(self.session, Receipt.__table__, rows)


#: what a ``tombstone_key`` looks like (the id an erased customer's rows are kept under)
_DIGEST = re.compile(f"[0-9a-f]{{{TOMBSTONE_KEY_LENGTH}}}")


class Erasures:
    """Tombstones of erased customers, kept as ``tombstone_key`` digests, and what an
    erasure does to the rows the reports read."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def erased(self, customer_ids: Sequence[str]) -> dict[str, str]:
        """Of these ids, those of an erased customer, each with the key its rows are kept
        under: its digest, or the id itself when it is one (an erased customer's order or
        entry, kept under its key)."""
        ids = list(dict.fromkeys(customer_ids))
        keys = tombstone_keys(ids)
        candidates = [*keys, *(c for c in ids if _DIGEST.fullmatch(c) and c not in keys)]
        found: set[str] = set()
        for chunk in chunks(candidates, IN_CHUNK):
            found.update(
                self.session.scalars(
                    select(ErasedCustomer.customer_hash).where(
                        ErasedCustomer.customer_hash.in_(chunk)
                    )
                )
            )
        erased = {customer_id: key for key, customer_id in keys.items() if key in found}
        erased.update((c, c) for c in ids if c in found)
        return erased

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Tombstones ``{customer_hash, erasure_id, erased_at}``; a known one stays as it is."""
        insert_ignoring_duplicates(self.session, ErasedCustomer.__table__, rows)

    def pseudonymise(self, customer_ids: Sequence[str]) -> None:
        """Re-key these erased customers' orders, entries and receipts by their digests
        (the reports still count them; nothing names them) and forget their aliases."""
        keys = {customer_id: tombstone_key(customer_id) for customer_id in customer_ids}
        self.session.flush()  # pending ORM rows first: the updates below bypass the ORM
        for chunk in chunks(list(keys), IN_CHUNK):
            mapping = {customer_id: keys[customer_id] for customer_id in chunk}
            for column in (
                CustomerOrder.customer_id,
                Entry.customer_id,
                Receipt.customer_id,
                MergedEntry.customer_id,
            ):
                self.session.execute(
                    update(column.class_)
                    .where(column.in_(chunk))
                    .values(customer_id=case(mapping, value=column)),
                    execution_options={"synchronize_session": False},
                )
            self.session.execute(
                delete(CustomerAlias).where(
                    CustomerAlias.merged_id.in_(chunk) | CustomerAlias.survivor_id.in_(chunk)
                )
            )
        # A launch's cursor (the last customer id it handled) may name them: the audience id
        # before theirs resumes the launch at the same place (their row is gone).
        for customer_id in keys:
            self.session.execute(
                update(LaunchRun)
                .where(LaunchRun.cursor == customer_id)
                .values(
                    cursor=select(func.max(AudienceMember.customer_id))
                    .where(AudienceMember.customer_id < customer_id)
                    .scalar_subquery()
                )
            )


class Aliases:
    """Customer ids merged into a survivor (``profile.merged``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def survivors(self, customer_ids: Sequence[str]) -> dict[str, str]:
        """The survivor of each of ``customer_ids`` that was merged away."""
        found: dict[str, str] = {}
        for chunk in chunks(list(dict.fromkeys(customer_ids)), IN_CHUNK):
            rows = self.session.execute(
                select(CustomerAlias.merged_id, CustomerAlias.survivor_id).where(
                    CustomerAlias.merged_id.in_(chunk)
                )
            )
            found.update((merged_id, survivor_id) for merged_id, survivor_id in rows)
        return found

    def add(self, merged_ids: Sequence[str], survivor_id: str, merge_id: str) -> None:
        """Record (again: idempotent) that ``merged_ids`` now live under ``survivor_id``."""
        alias = CustomerAlias
        for chunk in chunks(list(merged_ids), IN_CHUNK):
            # ids merged earlier into a now merged id follow it to the new survivor
            self.session.execute(
                update(alias).where(alias.survivor_id.in_(chunk)).values(survivor_id=survivor_id)
            )
            self.session.execute(delete(alias).where(alias.merged_id.in_(chunk)))
        self.session.execute(
            insert(alias),
            [
                {"merged_id": m, "survivor_id": survivor_id, "merge_id": merge_id}
                for m in merged_ids
            ],
        )
