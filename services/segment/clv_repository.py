"""Every query of the predictive CLV (fits, stored predictions, the purchases they read)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pandas as pd
from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from services.segment.models import ClvFit, CustomerPrediction
from shared.db import (
    chunks,
    epoch_microseconds_sql,
    executemany,
    insert_sql,
    read_datetime,
    select_in,
    select_rows,
)

PREDICTIONS = cast(Table, CustomerPrediction.__table__)
FITS = cast(Table, ClvFit.__table__)

PURCHASE_COLUMNS = ["customer_id", "order_id", "purchased_at", "created_at", "net_e4", "currency"]

#: the prediction columns custom segment rules read (stored rows joined to the scores frame)
PREDICTION_COLUMNS = [
    "p_alive",
    "expected_purchases_30d",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_order_value_e4",
    "predicted_clv_e4",
    "predicted_clv_percentile",
]


class ClvFits:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, fit: ClvFit) -> ClvFit:
        self.session.add(fit)
        self.session.flush()
        return fit

    def get(self, fit_id: int) -> ClvFit | None:
        return self.session.get(ClvFit, fit_id)

    def latest_per_currency(self, with_models: bool = True) -> dict[str, ClvFit]:
        """The newest fit of each currency, whatever its status.

        ``with_models=False``: transient fits without their model parameters, read with one
        driver-level query (the scores read asks on every request: SQLAlchemy's statement
        took ~0.22 ms of its ~2 ms).
        """
        if not with_models:
            names = [c.name for c in FITS.columns if c.name != "models"]
            rows = select_rows(
                self.session,
                f"SELECT {', '.join(names)} FROM clv_fits "
                "WHERE id IN (SELECT max(id) FROM clv_fits GROUP BY currency)",
            )
            fits = [ClvFit(**dict(zip(names, row, strict=True))) for row in rows]
            for fit in fits:
                for name in ("as_of", "window_start", "fitted_at"):
                    setattr(fit, name, read_datetime(getattr(fit, name)))
            return {fit.currency: fit for fit in fits}
        newest = (
            select(ClvFit.currency, func.max(ClvFit.id).label("id"))
            .group_by(ClvFit.currency)
            .subquery()
        )
        found = self.session.scalars(select(ClvFit).join(newest, ClvFit.id == newest.c.id)).all()
        return {fit.currency: fit for fit in found}

    def in_force(self, currency: str, at: datetime) -> ClvFit | None:
        """The currency's fit in force at ``at``: the newest run at or before it, whatever its
        status (one publishing no numbers withdrew the older ones)."""
        return self.session.scalars(
            select(ClvFit)
            .where(ClvFit.currency == currency, ClvFit.as_of <= at.astimezone(UTC))
            .order_by(ClvFit.as_of.desc(), ClvFit.id.desc())
            .limit(1)
        ).first()

    def history(self, currency: str | None, limit: int, before: int | None = None) -> list[ClvFit]:
        """Fits newest first; ``before``: only fits with a smaller id (the keyset of a page)."""
        query = select(ClvFit).order_by(ClvFit.id.desc()).limit(limit)
        if currency is not None:
            query = query.where(ClvFit.currency == currency)
        if before is not None:
            query = query.where(ClvFit.id < before)
        return list(self.session.scalars(query).all())


class Predictions:
    def __init__(self, session: Session) -> None:
        self.session = session

    def replace_all(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Drop every stored prediction, then insert ``rows`` (tuples of ``columns``),
        with one driver-level executemany (a run writes every customer)."""
        self.session.execute(delete(PREDICTIONS))
        executemany(
            self.session, PREDICTIONS, insert_sql(PREDICTIONS, columns), columns, rows, ("as_of",)
        )

    def replace_for(
        self, customer_ids: Sequence[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Drop these customers' stored predictions, then insert ``rows`` (the per-event
        refresh: a few customers)."""
        for chunk in chunks(list(customer_ids), 900):
            self.session.execute(delete(PREDICTIONS).where(PREDICTIONS.c.customer_id.in_(chunk)))
        if rows:
            executemany(
                self.session,
                PREDICTIONS,
                insert_sql(PREDICTIONS, columns),
                columns,
                rows,
                ("as_of",),
            )

    def delete_for(self, customer_id: str) -> None:
        self.session.execute(delete(PREDICTIONS).where(PREDICTIONS.c.customer_id == customer_id))

    def for_customers(self, customer_ids: Sequence[str]) -> dict[str, CustomerPrediction]:
        found: dict[str, CustomerPrediction] = {}
        for chunk in chunks(list(customer_ids), 900):
            for row in self.session.scalars(
                select(CustomerPrediction).where(CustomerPrediction.customer_id.in_(chunk))
            ):
                found[row.customer_id] = row
        return found

    def event_rows(self, customer_ids: Sequence[str]) -> list[Any]:
        """(customer_id, fit_id, currency, as_of, *PREDICTION_COLUMNS) of these customers.

        Driver-level (the consumer's hot path reads it for every batch's changed
        customers); ``as_of`` is SQLite's text or PostgreSQL's datetime as they come.
        """
        names = ", ".join(["customer_id", "fit_id", "currency", "as_of", *PREDICTION_COLUMNS])
        sql = f"SELECT {names} FROM customer_predictions WHERE customer_id IN ({{marks}})"
        return select_in(self.session, sql, customer_ids)

    def figures(self) -> dict[str, dict[str, float]]:
        """Per currency: customers_predicted, predicted_clv_total (currency units),
        p_alive_mean, expected_purchases_90d_total of the stored predictions."""
        rows = self.session.execute(
            select(
                PREDICTIONS.c.currency,
                func.count(),
                func.sum(PREDICTIONS.c.predicted_clv_e4),
                func.avg(PREDICTIONS.c.p_alive),
                func.sum(PREDICTIONS.c.expected_purchases_90d),
            ).group_by(PREDICTIONS.c.currency)
        ).all()
        return {
            currency: {
                "customers_predicted": float(count),
                "predicted_clv_total": float(clv_e4 or 0) / 10_000,
                "p_alive_mean": float(p_alive or 0),
                "expected_purchases_90d_total": float(expected or 0),
            }
            for currency, count, clv_e4, p_alive, expected in rows
        }

    def frame(
        self, currency: str | None = None, between: tuple[str, str] | None = None
    ) -> pd.DataFrame:
        """Stored predictions: customer_id, currency, fit_id and :data:`PREDICTION_COLUMNS`
        (of one currency, or of the customer ids in ``between``, both ends included)."""
        names = ["customer_id", "currency", "fit_id", *PREDICTION_COLUMNS]
        query = select(*(PREDICTIONS.c[n] for n in names))
        if currency is not None:
            query = query.where(PREDICTIONS.c.currency == currency)
        if between is not None:
            query = query.where(PREDICTIONS.c.customer_id.between(*between))
        return pd.DataFrame(self.session.execute(query).all(), columns=names)


_INSTANTS = ("purchased_at", "created_at")


def valid_purchases(
    session: Session, customer_ids: Sequence[str] | None = None, created: bool = True
) -> pd.DataFrame:
    """Valid purchases (of everyone, or of these customers): customer_id, order_id,
    purchased_at, created_at (UTC; only with ``created``: parsing it is a third of the
    read), net_e4, currency.

    Plain DBAPI tuples, turned into columns at once: SQLAlchemy rows and pandas' row
    construction took 85 % of the read of 240,000 purchases.
    """
    connection = session.connection()
    sqlite = connection.dialect.name == "sqlite"
    names = [c for c in PURCHASE_COLUMNS if created or c != "created_at"]
    # instants as integer microseconds computed by the database: parsing SQLite's text in
    # pandas was most of the read (both give exactly the stored microsecond)
    dialect = connection.dialect.name
    selected = [epoch_microseconds_sql(c, dialect) if c in _INSTANTS else c for c in names]
    sql = (
        f"SELECT {', '.join(selected)} FROM order_states WHERE valid = {'1' if sqlite else 'true'}"
    )
    rows: list[Any] = []
    cursor = connection.connection.cursor()
    try:
        if customer_ids is None:
            cursor.execute(sql)
            rows = list(cursor.fetchall())
        else:
            mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
            for chunk in chunks(list(customer_ids), 900):
                cursor.execute(
                    f"{sql} AND customer_id IN ({', '.join(mark for _ in chunk)})", tuple(chunk)
                )
                rows.extend(cursor.fetchall())
    finally:
        cursor.close()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    frame = pd.DataFrame(
        {name: pd.Series(values, dtype=object) for name, values in zip(names, columns, strict=True)}
    )
    for column in ("purchased_at", "created_at")[: 2 if created else 1]:
        frame[column] = pd.to_datetime(frame[column].astype("int64"), unit="us", utc=True)
    frame["net_e4"] = frame["net_e4"].astype("int64")
    return frame
