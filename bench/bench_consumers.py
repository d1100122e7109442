"""CPU per order of each consumer on the same recorded stream: this tree, and (``--against``)
another source tree, alternately, in the same run.

usage: python bench/bench_consumers.py [--quick] [--orders N] [--reps R] [--against DIR]
                                       [--against-label TEXT] [--services a,b] [--figures PATH]

1. Records a stream: the default deployment (``bench_e2e.Deployment``, SQLite) takes N
   realistic orders (default 20,000; --quick 5,000) in 500-order batches until every
   consumer group caught up; then every record of the topics segment, profile and campaign
   consume (orders, customers, interactions, profiles, segments) is read back, in broker
   timestamp order, and the deployment stopped.
2. Replays it through each service's own consumer loop (``build_consumers(...)[0]``: its
   decoder, batch handler, ``processed_events`` dedup and one transaction per 500-record
   batch; no broker, so the Kafka client's fetch is not in the figure) on a fresh SQLite
   database, in a child process per service and tree: ``time.process_time()`` of the replay
   divided by the orders in the stream.
3. The baseline, measured in the same run on the same stream: with ``--against DIR`` (e.g.
   ``git archive <commit> | tar -x -C /tmp/before``), the same replay of DIR's code (its services,
   its shared loop), alternating with this tree R times (default 3; the medians are
   reported); without it, this tree's loop with a do-nothing batch handler (decode, dedup,
   bookkeeping and commits: the loop's own floor).

The end-to-end bench (``bench_e2e.py``) measures the whole processes (API, relay, Kafka
client, broker); this one isolates the consumer path, which a loaded shared machine moves
far less, so a change to a consumer shows in its ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("segment", "profile", "campaign")
CONSUMED = (
    "crm.orders.v1",
    "crm.customers.v1",
    "crm.interactions.v1",
    "crm.profiles.v1",
    "crm.segments.v1",
)
BATCH = 500


def record_stream(orders: int, path: Path) -> dict[str, int]:
    """Run the deployment, post ``orders``, dump what the consumers read to ``path``."""
    sys.path.insert(0, str(ROOT))
    from kafka import KafkaConsumer, TopicPartition

    from bench.bench_e2e import Deployment, finish_posting, start_posting
    from bench.e2e_load import Orders
    from bench.e2e_observe import LagMonitor

    generator = Orders(customers=max(orders // 3, 1000), seed=7)
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-consumers-") as tmp:
        deployment = Deployment("sqlite", Path(tmp))
        monitor = LagMonitor(deployment.bootstrap)
        try:
            bodies = generator.bodies(run, orders, 500)
            finish_posting(*start_posting(deployment, bodies, "/v1/orders/batch", 4))
            monitor.wait_caught_up(orders)
            reader = KafkaConsumer(
                bootstrap_servers=deployment.bootstrap, group_id=None, enable_auto_commit=False
            )
            partitions = [
                TopicPartition(topic, p)
                for topic in CONSUMED
                for p in (reader.partitions_for_topic(topic) or ())
            ]
            reader.assign(partitions)
            reader.seek_to_beginning()
            records: list[tuple[Any, ...]] = []
            idle = 0
            while idle < 6:
                polled = reader.poll(timeout_ms=500, max_records=20_000)
                idle = 0 if polled else idle + 1
                for batch in polled.values():
                    records.extend(
                        (r.topic, r.partition, r.offset, r.timestamp, r.key, r.value) for r in batch
                    )
            reader.close()
        finally:
            monitor.close()
            deployment.stop()
    records.sort(key=lambda r: (r[3], r[0], r[1], r[2]))
    path.write_bytes(pickle.dumps(records))
    counts: dict[str, int] = {}
    for record in records:
        counts[record[0]] = counts.get(record[0], 0) + 1
    return counts


def replay(service: str, stream: Path, noop: bool) -> dict[str, Any]:
    """(child, cwd = the tree under test) the stream through ``service``'s consumer loop."""
    sys.path.insert(0, os.getcwd())
    import collections
    import gc
    import importlib
    import types
    from datetime import UTC, datetime

    from shared.db import Database, run_migrations
    from shared.runtime import tune_gc

    Record = collections.namedtuple("Record", "topic partition offset timestamp key value")
    records = pickle.loads(stream.read_bytes())
    app = importlib.import_module(f"services.{service}.app")
    config = importlib.import_module(f"services.{service}.config")
    consumer = importlib.import_module(f"services.{service}.consumer")
    with tempfile.TemporaryDirectory(prefix="bench-consumers-") as tmp:
        url = f"sqlite:///{tmp}/{service}.sqlite"
        run_migrations(app.MIGRATIONS, url)
        settings = config.Settings(database_url=url, data_dir=Path(tmp))
        db = Database.from_url(url, sqlite_pragmas=settings.sqlite_pragmas)
        runtime = types.SimpleNamespace(
            settings=settings,
            db=db,
            publisher=None,
            clock=lambda: datetime.now(UTC),
            rules=None,
            # trees before the typed runtimes (issue 17) read these from ``extras``
            extras={"clock": lambda: datetime.now(UTC), "rules": None},
        )
        loop = consumer.build_consumers(runtime)[0]
        if noop:
            loop.batch_handler = lambda session, messages: None
        wanted = set(loop.topics)
        mine = [Record(*r) for r in records if r[0] in wanted]
        orders = sum(1 for r in records if r[0] == "crm.orders.v1")
        tune_gc()  # what the service command line does
        gc.collect()
        cpu = time.process_time()
        for start in range(0, len(mine), BATCH):
            messages = []
            for record in mine[start : start + BATCH]:
                message = loop._decode(record)
                if isinstance(message, tuple):
                    raise RuntimeError(f"{service} could not decode {record[:3]}: {message[1]}")
                messages.append(message)
            loop._process(messages)
        cpu = time.process_time() - cpu
        db.dispose()
    return {
        "records": len(mine),
        "processed": loop.processed_count,
        "orders": orders,
        "us_per_order": cpu * 1e6 / orders,
    }


def child(tree: Path, service: str, stream: Path, noop: bool) -> float:
    command = [sys.executable, str(Path(__file__).resolve()), "--replay", service]
    command += ["--stream", str(stream)] + (["--noop"] if noop else [])
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{service} replay in {tree} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    if result["processed"] != result["records"]:
        raise RuntimeError(f"{service} in {tree}: processed {result} ")
    return float(result["us_per_order"])


def commit_of(tree: Path) -> str:
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    )
    return found.stdout.strip() or tree.name


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another source tree: the baseline")
    parser.add_argument("--against-label", help="what --against is (default: its git commit)")
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    parser.add_argument("--replay", help=argparse.SUPPRESS)
    parser.add_argument("--stream", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--noop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        print(json.dumps(replay(args.replay, args.stream, args.noop)), flush=True)
        return 0
    sys.path.insert(0, str(ROOT))
    from bench.figures import Figure, record, use_sink

    use_sink(args.figures)
    orders = args.orders or (5_000 if args.quick else 20_000)
    services = args.services.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-consumers-") as tmp:
        stream = Path(tmp) / "stream.pickle"
        counts = record_stream(orders, stream)
        print(f"stream of {orders:,} orders: {counts}", flush=True)
        against = args.against.resolve() if args.against else None
        base_name = (
            f"same stream, the code at {args.against_label or commit_of(against)}"
            if against
            else "same loop, do-nothing batch handler"
        )
        for service in services:
            mine: list[float] = []
            base: list[float] = []
            for _ in range(args.reps):
                mine.append(child(ROOT, service, stream, noop=False))
                base.append(child(against or ROOT, service, stream, noop=against is None))
            value, baseline = statistics.median(mine), statistics.median(base)
            print(
                f"  {service}: {value:.1f} us CPU per order (runs {[round(v) for v in mine]}); "
                f"{base_name}: {baseline:.1f} (runs {[round(v) for v in base]}); "
                f"ratio {value / baseline:.2f}",
                flush=True,
            )
            record(
                Figure(
                    "consumers",
                    f"{service} consumer CPU us per order, replayed stream (SQLite)",
                    round(value, 1),
                    "us",
                    base_name,
                    round(baseline, 1),
                    size=orders,
                    extra={"runs": mine, "baseline_runs": base, "commit": commit_of(ROOT)},
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
