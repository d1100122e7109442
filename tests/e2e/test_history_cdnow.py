"""History of any age on the defaults: the CDNOW transactions (1997-1998, the BG/NBD papers'
data set, shipped with lifetimes) through ``crm.raw.orders.v1`` into the real processes;
segment's F, M, R and totals equal a pandas computation and its CLV summary equals
lifetimes', exactly (issue 11, deliverable 2).

The test uses CDNOW_sample (6,919 transactions, 2,357 customers); ``CRM_CDNOW=master``
runs the full CDNOW_master (69,659 transactions) the same way."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import lifetimes
import orjson
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data

from devtools.testing import wait_for
from shared import topics
from shared.producer import Publisher
from tests.e2e.system import RunningSystem

DATASETS = Path(lifetimes.__file__).parent / "datasets"
#: the end of the data, in the scoring policy's (and the shop's) timezone
AS_OF = "1998-06-30T23:59:59+08:00"


def cdnow() -> pd.DataFrame:
    name = "CDNOW_master.txt" if os.environ.get("CRM_CDNOW") == "master" else "CDNOW_sample.txt"
    columns = ["id", "date", "units", "amount"]
    if name == "CDNOW_sample.txt":
        columns = ["customer", *columns]
    raw = pd.read_csv(
        DATASETS / name,
        sep=r"\s+",
        header=None,
        names=columns,
        dtype={"date": str, "id": str},
        skiprows=1 if name == "CDNOW_master.txt" else 0,  # (the master has a header line)
    )
    raw["amount"] = raw["amount"].map(lambda a: Decimal(str(a)).quantize(Decimal("0.01")))
    raw["day"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    return raw.reset_index(drop=True)


def pages(system: RunningSystem, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"as_of": AS_OF, "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        response = system.get("segment", path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def test_cdnow_through_the_raw_topic_on_the_defaults_equals_pandas_and_lifetimes(
    system: RunningSystem,
) -> None:
    system.wait_ready(timeout=120)
    raw = cdnow()
    records = [
        (
            topics.RAW_ORDERS,
            row.id,
            orjson.dumps(
                {
                    "order_id": f"cdnow-{index}",
                    "customer_id": row.id,
                    "status": "completed",
                    # noon in the shop's timezone on the day of the transaction
                    "created_at": f"{row.date[:4]}-{row.date[4:6]}-{row.date[6:]} 12:00:00",
                    "currency": "USD",
                    "total_amount": str(row.amount),
                    "items": [{"quantity": int(row.units), "unit_price": None}],
                }
            ),
        )
        for index, row in enumerate(raw.itertuples())
    ]
    publisher = Publisher(system.bootstrap_servers, system.namespace)
    try:
        publisher.publish_all(records, timeout=120)
    finally:
        publisher.close()

    def ingested() -> dict[str, Any] | None:
        stats = system.get("ingest", "/v1/stats?windows=1h").json()["windows"]["1h"]
        done = stats["accepted"] + stats["rejected"] + stats["duplicate"]
        return stats if done >= len(raw) else None

    stats = wait_for(ingested, timeout=300, interval=1, what="every CDNOW record ingested")
    assert (stats["accepted"], stats["rejected"], stats["duplicate"]) == (len(raw), 0, 0)

    # the pandas oracle
    as_of_day = pd.Timestamp("1998-06-30")
    grouped = raw.groupby("id")
    expected = pd.DataFrame(
        {
            "order_count": grouped.size(),
            "total_spent": grouped["amount"].agg(lambda s: sum(s, Decimal(0))),
            "recency_days": (as_of_day - grouped["day"].max()).dt.days,
        }
    )
    window = raw[raw["day"] > as_of_day - pd.Timedelta(days=365)].groupby("id")
    expected["frequency"] = window.size().reindex(expected.index).fillna(0).astype(int)
    expected["monetary"] = (
        window["amount"].agg(lambda s: sum(s, Decimal(0))).reindex(expected.index)
    )
    expected["monetary"] = expected["monetary"].map(lambda m: Decimal(0) if pd.isna(m) else m)

    def scored() -> list[dict[str, Any]] | None:
        items = pages(system, "/v1/scores")
        total = sum(i["order_count"] for i in items)
        return items if len(items) == len(expected) and total == len(raw) else None

    scores = wait_for(scored, timeout=300, interval=2, what="every CDNOW customer scored")
    ours = {i["customer_id"]: i for i in scores}
    mismatches = [
        cid
        for cid, row in expected.iterrows()
        if (
            ours[cid]["order_count"],
            Decimal(ours[cid]["total_spent"]),
            ours[cid]["recency_days"],
            ours[cid]["frequency"],
            Decimal(ours[cid]["monetary"]),
        )
        != (
            row["order_count"],
            row["total_spent"],
            row["recency_days"],
            row["frequency"],
            row["monetary"],
        )
    ]
    assert mismatches == [], [(ours[c], expected.loc[c].to_dict()) for c in mismatches[:3]]

    # lifetimes' CLV summary (daily periods) against segment's
    theirs = summary_data_from_transaction_data(
        raw.assign(amount=raw["amount"].astype(float)),
        "id",
        "day",
        monetary_value_col="amount",
        observation_period_end="1998-06-30",
        freq="D",
    )
    # lifetimes' monetary_value is a float mean of the repeat days' totals; ours is the
    # exact mean to 1/10,000 (half even): the exact oracle in Decimals
    day_totals = raw.groupby(["id", "day"])["amount"].agg(lambda s: sum(s, Decimal(0)))
    exact_mean = {
        cid: (
            (sum(list(days)[1:], Decimal(0)) / (len(days) - 1)).quantize(Decimal("0.0001"))
            if len(days) > 1
            else Decimal(0)
        )
        for cid, days in day_totals.groupby(level=0)
    }
    summaries = {i["customer_id"]: i for i in pages(system, "/v1/clv-summary")}
    assert len(summaries) == len(theirs)
    differences = [
        cid
        for cid, row in theirs.iterrows()
        if (summaries[cid]["frequency"], summaries[cid]["recency"], summaries[cid]["T"])
        != (int(row["frequency"]), int(row["recency"]), int(row["T"]))
        or Decimal(summaries[cid]["monetary_value"]) != exact_mean[cid]
        or abs(float(exact_mean[cid]) - row["monetary_value"]) > 0.00005 + 1e-9
    ]
    assert differences == [], [(summaries[c], theirs.loc[c].to_dict()) for c in differences[:3]]
    print(f"CDNOW: {len(raw)} transactions, {len(expected)} customers, exact on the defaults")
