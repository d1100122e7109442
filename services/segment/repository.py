"""Every query the segment service makes."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any, cast

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import (
    JSON,
    DateTime,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from services.segment.models import (
    CustomerAlias,
    CustomerScore,
    CustomSegment,
    OrderState,
    SegmentMember,
)
from services.segment.scoring import AGGREGATE_COLUMNS, SCORE_COLUMNS
from shared.db import (
    chunks,
    epoch_microseconds_sql,
    executemany,
    executemany_columns,
    insert_sql,
    read_datetime,
    rows_of,
    select_in,
    select_rows,
    set_state,
    sqlite_datetime_memo,
    update_sql,
    upsert_sql,
)
from shared.events import ensure_aware, utcnow

CHUNK = 500

#: customers a full rescoring reads, scores and writes per step (bounds its memory, not its
#: result: beyond one page the cut points are computed from everyone first, in a lean
#: read of four columns that costs ~1.5 s per 1,000,000 customers, so a population that
#: fits one page is read once, as before paging). A page of 1,000,000 peaked at 1,045 MiB.
RESCORING_PAGE = 500_000

#: the stored columns :meth:`Customers.published_states` reads
PUBLISHED_STATE_COLUMNS = ["customer_id", "state_hash", "currency", "segments", *SCORE_COLUMNS]

ORDERS = cast(Table, OrderState.__table__)
CUSTOMERS = cast(Table, CustomerScore.__table__)
MEMBERS = cast(Table, SegmentMember.__table__)
SEGMENTS = cast(Table, CustomSegment.__table__)
ALIASES = cast(Table, CustomerAlias.__table__)

ORDER_FRAME_COLUMNS = [
    "customer_id",
    "order_id",
    "valid",
    "purchased_at",
    "created_at",
    "net_e4",
    "currency",
    "channel",
    "categories",
    "province",
    "city",
]


def _json_list(value: Any) -> tuple[str, ...]:
    # the driver-level query returns JSON as text on SQLite, parsed on PostgreSQL
    if isinstance(value, (str, bytes)):
        value = orjson.loads(value)
    return tuple(value or ())


class OrderStates:
    def __init__(self, session: Session) -> None:
        self.session = session

    def versions(self, order_ids: Sequence[str]) -> dict[str, tuple[datetime, int, str]]:
        """The stored version key (and customer) of each known order."""
        found: dict[str, tuple[datetime, int, str]] = {}
        for chunk in chunks(list(order_ids), CHUNK):
            rows = self.session.execute(
                select(
                    ORDERS.c.order_id,
                    ORDERS.c.version_at,
                    ORDERS.c.status_rank,
                    ORDERS.c.customer_id,
                ).where(ORDERS.c.order_id.in_(chunk))
            )
            for order_id, version_at, rank, customer_id in rows:
                found[order_id] = (ensure_aware(version_at), rank, customer_id)
        return found

    def rows(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of these orders (those known), as ``per_event.order_row`` makes them."""
        names = [c.name for c in ORDERS.columns]
        found: dict[str, dict[str, Any]] = {}
        sql = f"SELECT {', '.join(names)} FROM order_states WHERE order_id IN ({{marks}})"
        for raw in select_in(self.session, sql, order_ids):
            row = dict(zip(names, raw, strict=True))
            for name in ("version_at", "created_at", "purchased_at"):
                row[name] = read_datetime(row[name])
            row["valid"] = bool(row["valid"])
            row["categories"] = list(_json_list(row["categories"]))
            found[row["order_id"]] = row
        return found

    def customers_having_orders(self, customer_ids: Sequence[str]) -> set[str]:
        """Which of these customers have stored orders."""
        if not customer_ids:
            return set()
        sql = "SELECT DISTINCT customer_id FROM order_states WHERE customer_id IN ({marks})"
        rows = select_in(self.session, sql, customer_ids)
        return {r[0] for r in rows}

    def insert_many(self, rows: list[dict[str, Any]]) -> None:
        columns = [c.name for c in ORDERS.columns]
        executemany(
            self.session,
            ORDERS,
            insert_sql(ORDERS, columns),
            columns,
            rows_of(rows, columns),
        )

    def update_many(self, rows: list[dict[str, Any]]) -> None:
        columns = [c.name for c in ORDERS.columns if c.name != "order_id"]
        executemany(
            self.session,
            ORDERS,
            update_sql(ORDERS, columns, "order_id"),
            [*columns, "order_id"],
            rows_of(rows, [*columns, "order_id"]),
        )

    def frame_for(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """The orders of these customers, as the orders frame :mod:`scoring` expects."""
        sql = f"SELECT {', '.join(ORDER_FRAME_COLUMNS)} FROM order_states WHERE customer_id IN ({{marks}})"
        rows = select_in(self.session, sql, customer_ids)
        return self._frame(rows)

    def frame_all(self) -> pd.DataFrame:
        rows = self.session.execute(select(*(ORDERS.c[c] for c in ORDER_FRAME_COLUMNS))).all()
        return self._frame(rows)

    @staticmethod
    def _frame(rows: Sequence[Any]) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=ORDER_FRAME_COLUMNS)
        # SQLite gives naive UTC text, PostgreSQL aware datetimes: both parse to UTC
        frame["purchased_at"] = pd.to_datetime(frame["purchased_at"], utc=True, format="ISO8601")
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
        frame["valid"] = frame["valid"].astype(bool)
        frame["net_e4"] = frame["net_e4"].astype("int64")
        frame["categories"] = frame["categories"].map(_json_list)
        return frame

    def reassign(self, from_ids: Sequence[str], to_id: str) -> None:
        for chunk in chunks(list(from_ids), CHUNK):
            self.session.execute(
                update(ORDERS).where(ORDERS.c.customer_id.in_(chunk)).values(customer_id=to_id)
            )

    def delete_for(self, customer_id: str) -> None:
        self.session.execute(delete(ORDERS).where(ORDERS.c.customer_id == customer_id))

    def customers_with_orders(self) -> list[str]:
        return list(self.session.execute(select(ORDERS.c.customer_id).distinct()).scalars())


class Customers:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, customer_id: str) -> CustomerScore | None:
        return self.session.get(CustomerScore, customer_id)

    def snapshots(self, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored rows (aggregates and snapshot) of these customers, as dicts.

        Driver-level (the consumer's hot path and a rescoring's changed rows): datetimes
        and JSON are converted here the way SQLAlchemy's types would.
        """
        found: dict[str, dict[str, Any]] = {}
        names = [c.name for c in CUSTOMERS.columns]
        dates = [i for i, c in enumerate(CUSTOMERS.columns) if isinstance(c.type, DateTime)]
        lists = [i for i, c in enumerate(CUSTOMERS.columns) if isinstance(c.type, JSON)]
        # mostly written back unchanged: their text is remembered for the write
        kept = {names.index(n) for n in ("first_order_at", "last_order_at", "window_oldest_at")}
        parse, loads, texts = datetime.fromisoformat, orjson.loads, sqlite_datetime_memo()
        sql = f"SELECT {', '.join(names)} FROM customer_scores WHERE customer_id IN ({{marks}})"
        for raw in select_in(self.session, sql, customer_ids):
            values = list(raw)
            for i in dates:
                value = values[i]
                if value.__class__ is str:  # SQLite: naive UTC text
                    moment = parse(value + "+00:00" if len(value) <= 26 else value)
                    values[i] = moment
                    if i in kept:
                        texts[moment] = value
                elif value is not None:
                    values[i] = ensure_aware(value)
            for i in lists:
                value = values[i]
                # SQLite gives JSON text, PostgreSQL the parsed list
                values[i] = loads(value) if isinstance(value, str) else list(value or ())
            found[values[0]] = dict(zip(names, values, strict=True))
        return found

    def published_states(self, customer_ids: Sequence[str]) -> pd.DataFrame:
        """What a rescoring's changed customers' events need of their stored rows beyond the
        figures its pages read (:data:`PUBLISHED_STATE_COLUMNS`), indexed by customer id in
        the order asked (a customer without a row: missing values).

        A narrow read: :meth:`snapshots` of 168,741 changed customers (of 200,000) took
        3.4 s (profiled) of a policy change's write, parsing 25 columns (five times, three
        JSON lists) the write then mostly did not use.
        """
        names = PUBLISHED_STATE_COLUMNS
        sql = f"SELECT {', '.join(names)} FROM customer_scores WHERE customer_id IN ({{marks}})"
        rows = select_in(self.session, sql, customer_ids)
        # as objects: the encoders take them so (inferring dtypes cost ~0.1 s a 168,741)
        frame = pd.DataFrame(rows, columns=names, dtype=object)
        # SQLite gives JSON text, PostgreSQL the parsed list; few distinct texts: each parsed once
        lists: dict[str, tuple[str, ...]] = {}
        frame["segments"] = [
            (lists[v] if v in lists else lists.setdefault(v, _json_list(v)))
            if isinstance(v, str)
            else tuple(v or ())
            for v in frame["segments"].tolist()
        ]
        return frame.set_index("customer_id").reindex(pd.Index(customer_ids, dtype=object))

    def insert_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(insert(CUSTOMERS), rows)

    def upsert_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace whole customer rows (one driver-level executemany)."""
        columns = [c.name for c in CUSTOMERS.columns]
        executemany(
            self.session,
            CUSTOMERS,
            upsert_sql(CUSTOMERS, columns, "customer_id"),
            columns,
            rows_of(rows, columns),
            repeated=("aggregated_at", "scored_at"),
        )

    def update_many(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = [c for c in rows[0] if c != "customer_id"]
        statement = (
            update(CUSTOMERS)
            .where(CUSTOMERS.c.customer_id == bindparam("b_customer_id"))
            .values({c: bindparam(c) for c in columns})
        )
        self.session.connection().execute(
            statement,
            [{**{c: r[c] for c in columns}, "b_customer_id": r["customer_id"]} for r in rows],
        )

    def update_columns(
        self, values: list[Sequence[Any]], columns: list[str], repeated: Collection[str] = ()
    ) -> int:
        """Write ``columns`` of many customers, given column by column: a sequence of values
        per column, then the customer ids.

        A driver-level executemany (a full rescoring may write a million rows), with each
        value passed through its column type's bind processor first (memoised for the
        ``repeated`` columns: mostly one value).
        """
        sql = update_sql(CUSTOMERS, columns, "customer_id")
        names = [*columns, "customer_id"]
        total, size = 0, 50_000
        for start in range(0, len(values[0]) if values else 0, size):
            part = [column[start : start + size] for column in values]
            total += executemany_columns(self.session, CUSTOMERS, sql, names, part, repeated)
        return total

    def delete(self, customer_id: str) -> None:
        self.session.execute(delete(CUSTOMERS).where(CUSTOMERS.c.customer_id == customer_id))

    def aggregates_frame(self, extra: Sequence[str] = ()) -> pd.DataFrame:
        """Every customer's stored aggregates (plus ``extra`` columns) as a DataFrame."""
        names = [*AGGREGATE_COLUMNS, *extra]
        result = self.session.connection().exec_driver_sql(
            f"SELECT {', '.join(names)} FROM customer_scores"
        )
        frame = pd.DataFrame(result.fetchall(), columns=names)
        for column in ("first_order_at", "last_order_at", "window_oldest_at", "scored_at"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True, format="mixed")
        for column in ("order_count", "total_spent_e4", "frequency", "monetary_e4"):
            frame[column] = frame[column].astype("int64")
        for column in ("channels", "categories", "segments"):
            if column in frame:
                frame[column] = frame[column].map(_json_list)
        return frame

    def rescoring_inputs(
        self, with_attributes: bool, customer_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Every page of :meth:`rescoring_pages` in one frame (for callers that want it whole)."""
        pages = list(self.rescoring_pages(with_attributes, customer_ids))
        if not pages:
            return _inputs_frame([], _input_names(with_attributes), with_attributes)
        return pd.concat(pages, ignore_index=True)

    def rescoring_pages(
        self,
        with_attributes: bool,
        customer_ids: Sequence[str] | None = None,
        page: int | None = None,
    ) -> Iterator[pd.DataFrame]:
        """What a full rescoring reads, ``page`` customers at a time: the scoring inputs and
        the stored state hash, in customer id order (everyone), or these customers.

        Pages keep the rescoring's memory flat in the population: one page of Python tuples
        and its frame at a time (10,000,000 customers read whole held ~8 GiB). Keyset pages
        on the primary key read as fast as one scan on SQLite (1,000,000 rows: 1.22 s
        against 1.28 s), and PostgreSQL's client-side cursor no longer holds every row.
        ``with_attributes`` adds what custom-segment rules may test (channels, categories,
        region, lifetime totals).
        """
        names = _input_names(with_attributes)
        page = page or RESCORING_PAGE
        if customer_ids is None:
            for rows in self._pages(names, page):
                yield _inputs_frame(rows, names, with_attributes)
            return
        # some customers (the day sweep's): by id, 900 to a statement
        for wanted in chunks(list(customer_ids), page):
            rows = select_in(
                self.session,
                f"SELECT {', '.join(names)} FROM customer_scores WHERE customer_id IN ({{marks}})",
                wanted,
                size=900,
            )
            if rows:
                yield _inputs_frame([tuple(r) for r in rows], names, with_attributes)

    def count(self) -> int:
        """Every stored customer (scored or not)."""
        return int(self.session.execute(select(func.count()).select_from(CUSTOMERS)).scalar_one())

    def cut_point_inputs(self) -> pd.DataFrame:
        """What the cut points are computed from: order_count, frequency, monetary_e4 and
        last_order_at of every customer with a valid purchase (4 columns, not the
        rescoring's 13: 10,000,000 customers in ~320 MB)."""
        names = ["order_count", "frequency", "monetary_e4", "last_order_at"]
        connection = self.session.connection()
        if connection.dialect.name == "postgresql":
            # a server-side cursor: psycopg's default one would hold every row at once
            cursor = connection.connection.driver_connection.cursor(name="cut_point_inputs")  # type: ignore[union-attr]
        else:
            # one scan (nothing writes before the cut points are known): 1,000,000 rows in
            # 1.46 s against 2.03 s in keyset pages; SQLAlchemy rows took 6.1 s
            cursor = connection.connection.cursor()
        # every column a number (the instant as microseconds): the rows become one float
        # array at once, where text instants took a DataFrame and a parse (~0.5 s of 2 s for
        # 1,000,000 customers); exact (all below 2**53)
        instant = epoch_microseconds_sql("last_order_at", connection.dialect.name)
        sql = (
            "SELECT order_count, frequency, monetary_e4, "
            f"{instant} FROM customer_scores WHERE order_count > 0"
        )
        parts = []
        try:
            cursor.execute(sql)
            while rows := cursor.fetchmany(RESCORING_PAGE * 2):
                parts.append(np.array(rows, dtype=np.float64))
                del rows
        finally:
            cursor.close()
        values = np.concatenate(parts) if parts else np.empty((0, 4))
        frame = pd.DataFrame(
            {name: values[:, i].astype(np.int64) for i, name in enumerate(names[:3])}
        )
        # as int64 before the conversion: float microseconds times 1,000 lose nanoseconds,
        # enough to move an instant at a local midnight into the day before
        micros = values[:, 3]
        missing = np.isnan(micros)
        stamps = pd.to_datetime(np.where(missing, 0, micros).astype(np.int64), unit="us", utc=True)
        frame["last_order_at"] = pd.Series(stamps).where(~missing)
        return frame

    def _pages(self, names: list[str], page: int) -> Iterator[list[Any]]:
        """Rows of ``names`` (the first is customer_id) from customer_scores in keyset pages
        by customer id: plain DBAPI tuples on this session's connection and transaction,
        which pandas takes many times faster than Row objects."""
        select_sql = f"SELECT {', '.join(names)} FROM customer_scores"
        last: str | None = None
        while True:
            sql = select_sql if last is None else select_sql + " WHERE customer_id > {mark}"
            rows = select_rows(
                self.session,
                f"{sql} ORDER BY customer_id LIMIT {int(page)}",
                () if last is None else (last,),
            )
            if not rows:
                return
            last = rows[-1][0]
            yield rows
            if len(rows) < page:
                return

    def scored_count(self) -> int:
        """Customers with at least one valid purchase."""
        return int(
            self.session.execute(
                select(func.count()).select_from(CUSTOMERS).where(CUSTOMERS.c.order_count > 0)
            ).scalar_one()
        )

    def with_window_expiring(self, before: datetime) -> list[str]:
        """Customers with a windowed order at or before ``before`` (it has left the window)."""
        return list(
            self.session.execute(
                select(CUSTOMERS.c.customer_id).where(CUSTOMERS.c.window_oldest_at <= before)
            ).scalars()
        )

    def with_purchase_in(
        self, column: str, ranges: Sequence[tuple[datetime, datetime]]
    ) -> set[str]:
        """Customers whose ``first_order_at`` / ``last_order_at`` is in one of these [start, end)."""
        moment = CUSTOMERS.c[column]
        found: set[str] = set()
        for start, end in ranges:  # one index range scan each
            query = select(CUSTOMERS.c.customer_id).where(moment >= start, moment < end)
            found.update(self.session.execute(query).scalars())
        return found

    def ids_page(self, after: str | None, limit: int) -> list[str]:
        query = select(CUSTOMERS.c.customer_id).order_by(CUSTOMERS.c.customer_id).limit(limit)
        if after is not None:
            query = query.where(CUSTOMERS.c.customer_id > after)
        return list(self.session.execute(query).scalars())


def _input_names(with_attributes: bool) -> list[str]:
    names = [
        "customer_id",
        "order_count",
        "frequency",
        "monetary_e4",
        "first_order_at",
        "last_order_at",
        "state_hash",
    ]
    if with_attributes:
        names += ["currency", "total_spent_e4", "channels", "categories", "province", "city"]
    return names


def _inputs_frame(rows: list[Any], names: list[str], with_attributes: bool) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=names)
    if frame["state_hash"].dtype != "int64":
        # a missing hash made the column float, which rounds 64-bit hashes
        position = names.index("state_hash")
        frame["state_hash"] = pd.array([row[position] for row in rows], dtype="Int64")
    for column in ("first_order_at", "last_order_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in ("order_count", "frequency", "monetary_e4"):
        frame[column] = frame[column].astype("int64")
    frame["state_hash"] = frame["state_hash"].astype("Int64")
    if with_attributes:
        frame["total_spent_e4"] = frame["total_spent_e4"].astype("int64")
        for column in ("channels", "categories"):
            frame[column] = frame[column].map(_json_list)
    return frame


def lock_customers_for_rescoring(session: Session) -> None:
    """Hold off consumers' writes while a full rescoring reads and then writes everyone.

    PostgreSQL: an EXCLUSIVE table lock (reads go on). SQLite: a first write takes the
    database's write lock before anything is read.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE customer_scores IN EXCLUSIVE MODE"))
    else:
        set_state(session, "segment.rescoring_started_at", utcnow().isoformat())
