"""Segment benchmarks: full rescoring, CLV summary vs lifetimes, consumer throughput.

usage: python bench/bench_segment.py [--quick] [--customers N] [--orders N] [--events N]
                                     [--only rescoring,clv,consumer]

Each measurement runs in its own process so its peak memory (ru_maxrss) is its own.

1. Full rescoring of N stored aggregates on SQLite (default 1,000,000; --quick 10,000):
   cut points and every score recomputed from the stored aggregates, changes written
   (with their segment.changed events in the outbox), in one transaction. The stored
   snapshot is the previous day's, so the run publishes what one batch recompute publishes.
   Then a policy change that moves most customers (R and F on fixed breakpoints instead of
   quintiles, wider lifecycle stages: what PUT /v1/scoring-policy does, in one transaction),
   which rewrites and publishes most rows rather than the batch recompute's ~1 %.
   Baseline in the same run: the in-memory part alone (cut points + scores).
2. CLV summary from N orders (default 10,000,000; --quick 100,000) beside lifetimes'
   summary_data_from_transaction_data on the same data, results compared.
3. Order events/s into the database: the batch handler alone on SQLite (baseline), and
   through the real consumer loop from the embedded broker (default 100,000; --quick 5,000).
   25,000 customers; 10 % of the events are refunds (the last tenth refunds earlier
   orders, moving them to another customer). Both phases tune SQLite and the garbage
   collector as the service does (Settings.sqlite_pragmas, shared.runtime.tune_gc). Wall-clock
   rates depend on what else runs on the machine: CPU-time rates and the load average
   are printed beside them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.figures import Figure, peak_rss_mib, record, use_sink  # noqa: E402

AS_OF = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
BATCH = int(os.environ.get("BENCH_SEGMENT_BATCH", "1000"))  # events per transaction (handler phase)


def peak_mib() -> float:
    return peak_rss_mib()


def emit(result: dict) -> None:
    result["peak_rss_mib"] = round(peak_mib(), 1)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- 1. rescoring


def _sqlite_time(values: pd.Series) -> list:
    text = values.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text.where(values.notna(), None).tolist()


def seed_aggregates(n: int, path: Path) -> None:
    """N customers with aggregates and a snapshot scored as of the previous day."""
    from services.segment import published_state, scoring
    from services.segment.app import MIGRATIONS
    from services.segment.models import CustomerScore
    from services.segment.policy import DEFAULT_POLICY
    from shared.db import Database, run_migrations

    url = f"sqlite:///{path}"
    run_migrations(MIGRATIONS, url)
    rng = np.random.default_rng(1)
    counts = rng.geometric(0.45, n)
    frequency = np.minimum(counts, rng.integers(0, 6, n) + 1)
    last_days = rng.exponential(120, n).astype("int64")
    first_days = last_days + rng.integers(0, 700, n)
    monetary = (frequency * rng.lognormal(5, 1, n) * 10_000).astype("int64")
    aggregates = pd.DataFrame(
        {
            "customer_id": [f"c{i:08d}" for i in range(n)],
            "currency": "CNY",
            "order_count": counts,
            "total_spent_e4": monetary + (counts - frequency) * 500_000,
            "first_order_at": pd.Timestamp(AS_OF) - pd.to_timedelta(first_days, unit="D"),
            "last_order_at": pd.Timestamp(AS_OF) - pd.to_timedelta(last_days, unit="D"),
            "frequency": frequency,
            "monetary_e4": monetary,
            "window_oldest_at": pd.Timestamp(AS_OF)
            - pd.to_timedelta(np.minimum(first_days, 300), unit="D"),
            "channels": [("tmall",)] * n,
            "categories": [("shoes",)] * n,
            "province": "浙江省",
            "city": "杭州市",
        }
    )
    yesterday = AS_OF - timedelta(days=1)
    _, scores = scoring.rescore(aggregates, DEFAULT_POLICY, 1, yesterday)
    columns = [c.name for c in CustomerScore.__table__.columns]
    frame = scores.assign(
        channels='["tmall"]',
        categories='["shoes"]',
        segments="[]",
        state_hash=published_state.state_hashes(scores, [[] for _ in range(n)]),
        policy_version=1,
        aggregated_at=yesterday,
        scored_at=yesterday,
    )
    for column in ("first_order_at", "last_order_at", "window_oldest_at"):
        frame[column] = _sqlite_time(frame[column])
    for column in ("aggregated_at", "scored_at"):
        frame[column] = yesterday.strftime("%Y-%m-%d %H:%M:%S.%f")
    frame = frame[columns].astype(object)
    frame = frame.where(frame.notna(), None)
    db = Database.from_url(url)
    with db.engine.begin() as connection:
        marks = ", ".join("?" for _ in columns)
        connection.exec_driver_sql(
            f"INSERT INTO customer_scores ({', '.join(columns)}) VALUES ({marks})",
            [
                tuple(int(v) if isinstance(v, np.integer) else v for v in row)
                for row in frame.itertuples(index=False)
            ],
        )
    db.dispose()


def run_rescoring(path: Path) -> None:
    """The full rescoring alone in this process (so the peak RSS is its own)."""
    from services.segment import rescoring
    from services.segment.config import Settings as SegmentSettings
    from shared.db import Database

    db = Database.from_url(f"sqlite:///{path}", sqlite_pragmas=SegmentSettings().sqlite_pragmas)
    started, cpu = time.perf_counter(), time.process_time()
    with db.unit_of_work() as session:
        outcome = rescoring.rescore_all(session, AS_OF)
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    emit(
        {
            "phase": "rescoring",
            "customers": outcome.customers,
            "changed": outcome.changed,
            "seconds_total": round(total, 2),
            "cpu_seconds_total": round(cpu, 2),
            "phases": outcome.phases,
        }
    )


#: a policy change that moves most customers: R and F on fixed breakpoints instead of
#: quintiles, and wider lifecycle stages (what an operator's PUT /v1/scoring-policy does)
POLICY_CHANGE = {
    "recency": {"method": "fixed", "breakpoints": [14, 30, 60, 120]},
    "frequency": {"method": "fixed", "breakpoints": [1, 2, 3, 4]},
    "lifecycle": {"active_days": 60, "silent_days": 120, "sleeping_days": 240},
}


def run_policy_change(path: Path) -> None:
    """A policy change and the rescoring it triggers, as the PUT route runs them."""
    from services.segment import rescoring, scoring_context
    from services.segment.config import Settings as SegmentSettings
    from services.segment.policy import ScoringPolicy
    from shared.db import Database

    db = Database.from_url(f"sqlite:///{path}", sqlite_pragmas=SegmentSettings().sqlite_pragmas)
    started, cpu = time.perf_counter(), time.process_time()
    with db.unit_of_work() as session:
        _, window_changed = scoring_context.set_policy(
            session, ScoringPolicy.model_validate(POLICY_CHANGE), comment="bench"
        )
        outcome = rescoring.rescore_all(session, AS_OF, reaggregate=window_changed)
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    emit(
        {
            "phase": "policy",
            "customers": outcome.customers,
            "changed": outcome.changed,
            "seconds_total": round(total, 2),
            "cpu_seconds_total": round(cpu, 2),
            "phases": outcome.phases,
        }
    )


def run_scoring_baseline(path: Path) -> None:
    """The in-memory part alone: cut points and every score over the loaded aggregates."""
    from services.segment import scoring
    from services.segment.policy import DEFAULT_POLICY
    from services.segment.repository import Customers
    from shared.db import Database

    db = Database.from_url(f"sqlite:///{path}")
    with db.sessions() as session:
        frame = Customers(session).rescoring_inputs(with_attributes=False)
    started = time.perf_counter()
    scoring.rescore(frame, DEFAULT_POLICY, 1, AS_OF)
    emit({"phase": "baseline", "seconds": round(time.perf_counter() - started, 4)})


# --------------------------------------------------------------------------- 2. CLV


def generate_orders(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    customers = max(n // 8, 1)
    ids = rng.integers(0, customers, n)
    start = pd.Timestamp("2024-01-01", tz="Asia/Shanghai")
    seconds = rng.integers(0, 3 * 365 * 86400, n)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "purchased_at": (start + pd.to_timedelta(seconds, unit="s")).tz_convert("UTC"),
            "net_e4": rng.integers(100, 5_000_000, n),
        }
    )


def run_clv(n: int, which: str, out: Path) -> None:
    orders = generate_orders(n)
    as_of = datetime(2026, 12, 31, 23, 59, tzinfo=ZoneInfo("Asia/Shanghai"))
    if which == "ours":
        from services.segment.clv import clv_summary

        base = peak_mib()
        started = time.perf_counter()
        summary = clv_summary(orders, as_of, "Asia/Shanghai")
        seconds = time.perf_counter() - started
    else:
        from lifetimes.utils import summary_data_from_transaction_data

        frame = pd.DataFrame(
            {
                "id": orders["customer_id"],
                "date": orders["purchased_at"].dt.tz_convert("Asia/Shanghai").dt.tz_localize(None),
                "amount": orders["net_e4"] / 10_000,
            }
        )
        del orders
        base = peak_mib()
        started = time.perf_counter()
        summary = summary_data_from_transaction_data(
            frame, "id", "date", monetary_value_col="amount", observation_period_end="2026-12-31"
        )
        seconds = time.perf_counter() - started
    summary = summary.sort_index()
    np.savez(
        out,
        index=summary.index.to_numpy(),
        values=summary[["frequency", "recency", "T", "monetary_value"]].to_numpy(dtype="float64"),
    )
    emit(
        {
            "phase": f"clv-{which}",
            "orders": n,
            "customers": len(summary),
            "seconds": round(seconds, 2),
            "rss_before_call_mib": round(base, 1),
        }
    )


# --------------------------------------------------------------------------- 3. consumer


def order_events(n: int) -> list:
    from shared.events import Order, OrderRecordedEvent

    rng = np.random.default_rng(3)
    customers = max(n // 4, 1)
    events = []
    for i in range(n):
        customer = f"c{int(rng.integers(0, customers)):07d}"
        days = float(rng.uniform(0, 400))
        created = AS_OF - timedelta(days=days)
        status = "refunded" if i % 10 == 9 else "paid"
        order = Order(
            order_id=f"o{i % (n - n // 10) if status == 'refunded' else i}",
            customer_id=customer,
            status=status,  # type: ignore[arg-type]
            created_at=created,
            paid_at=created + timedelta(minutes=1),
            updated_at=created + timedelta(minutes=1 if status == "paid" else 60),
            currency="CNY",
            total_amount=f"{int(rng.integers(1, 2000))}.00",
            refunded_amount="0",
            channel="tmall",
            items=[{"sku": "A", "category": "shoes", "unit_price": "1.00"}],
            shipping={"province": "浙江省", "city": "杭州市"},
        )
        events.append(OrderRecordedEvent(source="bench", key=customer, data=order))
    return events


def run_handler_baseline(n: int, path: Path) -> None:
    from services.segment import per_event
    from services.segment.app import MIGRATIONS
    from services.segment.config import Settings as SegmentSettings
    from services.segment.handlers import VIEWS
    from shared.bus import Inbound
    from shared.db import Database, run_migrations
    from shared.event_views import view_decoder
    from shared.events import encode_event
    from shared.runtime import tune_gc

    url = f"sqlite:///{path}"
    run_migrations(MIGRATIONS, url)
    db = Database.from_url(url, sqlite_pragmas=SegmentSettings().sqlite_pragmas)
    tune_gc()  # what the service command line does
    wire = [encode_event(e) for e in order_events(n)]
    decode_event = view_decoder(VIEWS)  # what the consumer decodes orders into
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, n, BATCH):
        batch = []
        for offset, raw in enumerate(wire[start : start + BATCH]):
            event = decode_event(raw)
            batch.append(
                Inbound(
                    "crm.orders.v1",
                    0,
                    start + offset,
                    event.key,
                    raw,
                    event.type,
                    str(event.event_id),
                    event,
                )
            )
        with db.unit_of_work() as session:
            per_event.apply_messages(session, batch, AS_OF)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    emit(
        {
            "phase": "handler-alone",
            "cpu_events_per_second": round(n / cpu),
            "events": n,
            "seconds": round(seconds, 2),
            "events_per_second": round(n / seconds),
        }
    )


def run_consumer(n: int, path: Path) -> None:
    from devtools.broker import EmbeddedBroker
    from services.segment.app import MIGRATIONS
    from services.segment.config import Settings as SegmentSettings
    from services.segment.handlers import VIEWS, make_batch_handler
    from shared import topics
    from shared.bus import ConsumerLoop, Publisher, ensure_topics, envelope_decoder
    from shared.db import Database, run_migrations
    from shared.events import encode_event
    from shared.runtime import tune_gc

    url = f"sqlite:///{path}"
    run_migrations(MIGRATIONS, url)
    db = Database.from_url(url, sqlite_pragmas=SegmentSettings().sqlite_pragmas)
    tune_gc()  # what the service command line does
    events = order_events(n)
    with EmbeddedBroker(log_path=path.with_suffix(".broker.log")) as broker:
        ensure_topics(broker.bootstrap_servers, [topics.ORDERS, topics.PROFILES], 3)
        publisher = Publisher(broker.bootstrap_servers)
        started = time.perf_counter()
        publisher.publish_all((topics.ORDERS, e.key, encode_event(e)) for e in events)
        produce_seconds = time.perf_counter() - started
        publisher.close()
        del events  # the consumer process holds only what it consumes
        gc.collect()
        loop = ConsumerLoop(
            name="bench-segment",
            bootstrap_servers=broker.bootstrap_servers,
            group_id="bench-segment",
            topics=[topics.ORDERS, topics.PROFILES],
            db=db,
            publisher=Publisher(broker.bootstrap_servers),
            batch_handler=make_batch_handler(lambda: AS_OF),
            decoder=envelope_decoder(VIEWS),
            max_poll_records=SegmentSettings.model_fields["max_poll_records"].default,
        )
        loop.start()
        first_at = first_count = first_cpu = None
        deadline = time.monotonic() + 600
        while loop.processed_count < n and time.monotonic() < deadline:
            if first_at is None and loop.processed_count:
                first_at, first_count = time.perf_counter(), loop.processed_count
                first_cpu = time.process_time()
            time.sleep(0.01)
        done_at, done_cpu = time.perf_counter(), time.process_time()
        loop.stop()
    assert first_at is not None and first_count is not None and first_cpu is not None
    rate = (loop.processed_count - first_count) / max(done_at - first_at, 1e-9)
    cpu_rate = (loop.processed_count - first_count) / max(done_cpu - first_cpu, 1e-9)
    emit(
        {
            "phase": "consumer",
            "events": n,
            "processed": loop.processed_count,
            "produce_events_per_second": round(n / produce_seconds),
            "events_per_second": round(rate),
            "cpu_events_per_second": round(cpu_rate),
        }
    )


# --------------------------------------------------------------------------- driver


def child(args: list[str]) -> dict:
    process = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT
    )
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"{args} failed:\n{process.stdout[-2000:]}\n{process.stderr[-4000:]}")


def _load() -> str:
    """The 1 / 5 / 15 minute load averages: the machine is shared, wall figures depend on it."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--orders", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--only", default="rescoring,clv,consumer")
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    parser.add_argument("--phase")
    parser.add_argument("--n", type=int)
    parser.add_argument("--path")
    ns = parser.parse_args()
    use_sink(ns.figures)
    if ns.phase:
        path = Path(ns.path)
        {
            "seed": lambda: (seed_aggregates(ns.n, path), emit({"phase": "seed"})),
            "rescoring": lambda: run_rescoring(path),
            "policy": lambda: run_policy_change(path),
            "baseline": lambda: run_scoring_baseline(path),
            "clv-ours": lambda: run_clv(ns.n, "ours", path),
            "clv-lifetimes": lambda: run_clv(ns.n, "lifetimes", path),
            "handler": lambda: run_handler_baseline(ns.n, path),
            "consumer": lambda: run_consumer(ns.n, path),
        }[ns.phase]()
        return 0

    customers = ns.customers or (10_000 if ns.quick else 1_000_000)
    orders = ns.orders or (100_000 if ns.quick else 10_000_000)
    events = ns.events or (5_000 if ns.quick else 100_000)
    only = set(ns.only.split(","))
    print(
        f"segment benchmarks on {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"pandas {pd.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "rescoring" in only:
            db = work / "rescore.db"
            started = time.perf_counter()
            child(["--phase", "seed", "--n", str(customers), "--path", str(db)])
            print(
                f"\n[1] full rescoring, {customers:,} customers on SQLite "
                f"(seeded in {time.perf_counter() - started:.1f}s)"
            )
            base = child(["--phase", "baseline", "--path", str(db)])
            r = child(["--phase", "rescoring", "--path", str(db)])
            print(f"    in-memory baseline (cut points + all scores): {base['seconds']:.2f}s")
            print(
                f"    full rescoring (read, score, diff, write {r['changed']:,} changes + events, "
                f"commit): {r['seconds_total']:.2f}s wall, {r['cpu_seconds_total']:.2f}s CPU; "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB"
            )
            print(f"    phases (wall s): {r['phases']}")
            p = child(["--phase", "policy", "--path", str(db)])
            print(
                f"    policy change + rescoring (write {p['changed']:,} changes + events = "
                f"{100 * p['changed'] / p['customers']:.0f} %, commit): {p['seconds_total']:.2f}s "
                f"wall, {p['cpu_seconds_total']:.2f}s CPU; peak RSS {p['peak_rss_mib']:.0f} MiB"
            )
            print(f"    phases (wall s): {p['phases']}")
            for label, run in (("batch recompute", r), ("policy change", p)):
                for figure, value, target, unit in (
                    ("wall s", run["seconds_total"], 5 * customers / 1e6, "s"),
                    ("peak RSS MiB", run["peak_rss_mib"], 1024 * max(1, customers / 1e6), "MiB"),
                ):
                    record(
                        Figure(
                            "segment",
                            f"full rescoring, {label} ({100 * run['changed'] / run['customers']:.0f} "
                            f"% rewritten), {customers:,} customers: {figure}",
                            value,
                            unit,
                            "in-memory scoring alone (s)" if unit == "s" else None,
                            base["seconds"] if unit == "s" else None,
                            f"< {target:g}" if customers >= 1_000_000 else None,
                            size=customers,
                            extra={"phases": run["phases"], "changed": run["changed"]},
                        )
                    )
        if "clv" in only:
            print(f"\n[2] CLV summary from {orders:,} orders")
            ours = child(
                ["--phase", "clv-ours", "--n", str(orders), "--path", str(work / "ours.npz")]
            )
            theirs = child(
                [
                    "--phase",
                    "clv-lifetimes",
                    "--n",
                    str(orders),
                    "--path",
                    str(work / "lifetimes.npz"),
                ]
            )
            a, b = np.load(work / "ours.npz"), np.load(work / "lifetimes.npz")
            same = (
                np.array_equal(a["index"], b["index"])
                and np.array_equal(a["values"][:, :3], b["values"][:, :3])
                and np.allclose(a["values"][:, 3], b["values"][:, 3], rtol=1e-9)
            )
            print(
                f"    ours:      {ours['seconds']:.2f}s, peak RSS {ours['peak_rss_mib']:.0f} MiB "
                f"(data alone {ours['rss_before_call_mib']:.0f} MiB)"
            )
            print(
                f"    lifetimes: {theirs['seconds']:.2f}s, peak RSS {theirs['peak_rss_mib']:.0f} MiB "
                f"(data alone {theirs['rss_before_call_mib']:.0f} MiB)"
            )
            print(
                f"    speed-up {theirs['seconds'] / max(ours['seconds'], 1e-9):.1f}x; "
                f"{ours['customers']:,} customers; identical results: {same}"
            )
            record(
                Figure(
                    "segment",
                    f"CLV summary from {orders:,} orders (s)" + ("" if same else " DIFFERENT"),
                    ours["seconds"],
                    "s",
                    "lifetimes summary_data_from_transaction_data (s)",
                    theirs["seconds"],
                    "ratio <= 0.2",
                    size=orders,
                )
            )
        if "consumer" in only:
            print(f"\n[3] {events:,} order events into SQLite (load average {_load()})")
            h = child(["--phase", "handler", "--n", str(events), "--path", str(work / "h.db")])
            print(
                f"    batch handler alone (decode + 1,000-event transactions): "
                f"{h['events_per_second']:,} events/s wall ({h['cpu_events_per_second']:,}/s of "
                f"CPU time), peak RSS {h['peak_rss_mib']:.0f} MiB; load average {_load()}"
            )
            c = child(["--phase", "consumer", "--n", str(events), "--path", str(work / "c.db")])
            print(
                f"    through the consumer loop from the embedded broker: "
                f"{c['events_per_second']:,} events/s wall ({c['cpu_events_per_second']:,}/s of "
                f"the process's CPU time; produced at {c['produce_events_per_second']:,}/s), "
                f"peak RSS {c['peak_rss_mib']:.0f} MiB; load average {_load()}"
            )
            for key, label in (("events_per_second", "wall"), ("cpu_events_per_second", "CPU")):
                record(
                    Figure(
                        "segment",
                        f"consumer order events/s ({label}), {events:,} events",
                        c[key],
                        "events/s",
                        "batch handler alone, no broker",
                        h[key],
                        ">= 10000",
                        size=events,
                    )
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
