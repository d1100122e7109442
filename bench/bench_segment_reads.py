"""Segment's scores read, ``GET /v1/customers/{id}/scores`` without ``as_of``: stored vs recomputed.

usage: python bench/bench_segment_reads.py [--quick] [--orders N] [--seconds S] [--figures PATH]

Seeds N orders (default 200,000; --quick 5,000) of N/4 customers through the consumer's
path (``per_event.apply_messages``) on SQLite, with a custom segment, then a full
rescoring marked swept. Then, in this process, the segment app (FastAPI's TestClient, one
client, no consumer) answers GETs of random customers' scores for S seconds each way,
alternating twice:

- baseline: the read as it was, every request aggregating and scoring the customer's
  orders with pandas (``reads.score_customers`` at ``consistent_now``);
- the read now (``reads.current_scores``): the stored row.

Printed: requests/s and p50 / p99 latency of each, the ratio, and whether both answered
the same for a sample of customers (they must: checked before timing). Then the same two
reads without HTTP (the route's work in its transaction: the scores and their
predictions), which the TestClient's own ~1.5 ms per request hides in the first figure.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_segment import AS_OF, order_events  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.figures import Figure, record, use_sink  # noqa: E402
from services.segment import (  # noqa: E402
    per_event,
    reads,
    rescoring,
    scoring_context,
    segment_admin,
    service,
)
from services.segment.app import MIGRATIONS, create_app  # noqa: E402
from services.segment.config import Settings  # noqa: E402
from services.segment.sweep import consistent_now, mark_swept  # noqa: E402
from shared.bus import Inbound  # noqa: E402
from shared.db import Database, run_migrations  # noqa: E402

KEY = "bench-reads-key"
#: the reads run a few minutes after the rescoring, the same day (as on a live system)
READ_TIME = AS_OF + timedelta(minutes=10)


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def seed(url: str, n: int) -> list[str]:
    """N orders through the consumer's path, a custom segment, a full rescoring; the customers."""
    run_migrations(MIGRATIONS, url)
    db = Database.from_url(url)
    with db.unit_of_work() as session:
        rule = scoring_context.RULE_ADAPTER.validate_python(
            {"field": "monetary", "op": "gte", "value": 2000}
        )
        segment_admin.create_segment(session, "big-spenders", "big spenders", None, rule)
    events = order_events(n)
    for start in range(0, n, 5000):
        batch = [
            Inbound("crm.orders.v1", 0, start + i, e.key, b"", e.type, str(e.event_id), e)
            for i, e in enumerate(events[start : start + 5000])
        ]
        with db.unit_of_work() as session:
            per_event.apply_messages(session, batch, AS_OF)
    with db.unit_of_work() as session:
        rescoring.rescore_all(session, AS_OF)
        mark_swept(session, AS_OF)
        session.execute(text("DELETE FROM outbox"))
        customers = list(session.execute(text("SELECT customer_id FROM customer_scores")).scalars())
    db.dispose()
    return customers


def recomputed(session: Any, customer_ids: Any, now: Any) -> list[reads.CustomerView]:
    """The read as it was before it served the stored rows."""
    return reads.score_customers(session, customer_ids, None, consistent_now(session, now))


@contextmanager
def reading(path: Callable[..., list[reads.CustomerView]]) -> Iterator[None]:
    served = reads.current_scores
    reads.current_scores = path  # type: ignore[assignment]
    try:
        yield
    finally:
        reads.current_scores = served  # type: ignore[assignment]


def timed(client: TestClient, customers: list[str], seconds: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    latencies: list[float] = []
    headers = {"X-API-Key": KEY}
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        customer = rng.choice(customers)
        mark = time.perf_counter()
        response = client.get(f"/v1/customers/{customer}/scores", headers=headers)
        latencies.append(time.perf_counter() - mark)
        if response.status_code != 200:
            raise RuntimeError(f"{customer}: {response.status_code} {response.text}")
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def timed_use_case(
    db: Database,
    path: Callable[..., list[reads.CustomerView]],
    customers: list[str],
    seconds: float,
) -> float:
    """Reads per second of the route's work alone (no HTTP), one customer at a time."""
    rng = random.Random(5)
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        with db.unit_of_work() as session:
            views = path(session, [rng.choice(customers)], READ_TIME)
            service.with_predictions(session, views, None)
        count += 1
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--figures", help="append the headline figure here (JSON lines)")
    ns = parser.parse_args()
    use_sink(ns.figures)
    n = ns.orders or (5_000 if ns.quick else 200_000)
    seconds = ns.seconds or (0.5 if ns.quick else 10.0)
    print(f"segment scores reads, {n:,} orders of {n // 4:,} customers on SQLite; load {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'segment.db'}"
        started = time.perf_counter()
        customers = seed(url, n)
        print(f"  seeded and rescored in {time.perf_counter() - started:.1f}s")
        settings = Settings(
            kafka_bootstrap_servers="127.0.0.1:1",
            data_dir=Path(tmp),
            database_url=url,
            api_key=KEY,
            run_consumer=False,
            rescore_at_start=False,
        )
        app = create_app(settings)
        runtime = app.state.runtime
        runtime.clock = lambda: READ_TIME
        with TestClient(app) as client:
            sample = random.Random(7).sample(customers, min(200, len(customers)))
            headers = {"X-API-Key": KEY}
            now = [client.get(f"/v1/customers/{c}/scores", headers=headers).json() for c in sample]
            with reading(recomputed):
                before = [
                    client.get(f"/v1/customers/{c}/scores", headers=headers).json() for c in sample
                ]
            same = now == before
            print(f"  same answers for {len(sample)} customers: {same}")
            runs: dict[str, list[dict[str, float]]] = {"recomputed": [], "stored": []}
            for round_ in range(2):
                with reading(recomputed):
                    runs["recomputed"].append(timed(client, customers, seconds, round_))
                runs["stored"].append(timed(client, customers, seconds, round_))
        best = {name: max(r, key=lambda x: x["rps"]) for name, r in runs.items()}
        for name, figure in best.items():
            print(
                f"  {name:>10}: {figure['rps']:,.0f} requests/s, p50 {figure['p50_ms']:.2f} ms, "
                f"p99 {figure['p99_ms']:.2f} ms ({figure['requests']:,.0f} requests, best of 2)"
            )
        ratio = best["stored"]["rps"] / best["recomputed"]["rps"]
        print(f"  ratio stored / recomputed: {ratio:.1f}x; load {_load()}")
        db = Database.from_url(url)
        alone = {"recomputed": 0.0, "stored": 0.0}
        for _ in range(2):
            for name, path in (("recomputed", recomputed), ("stored", reads.current_scores)):
                alone[name] = max(alone[name], timed_use_case(db, path, customers, seconds))
        db.dispose()
        print(
            f"  without HTTP: recomputed {alone['recomputed']:,.0f} reads/s, stored "
            f"{alone['stored']:,.0f} reads/s, ratio {alone['stored'] / alone['recomputed']:.1f}x"
        )
        record(
            Figure(
                "segment-reads",
                "GET /v1/customers/{id}/scores, stored (requests/s, one client)",
                round(best["stored"]["rps"], 1),
                "requests/s",
                "the same read recomputed from orders (requests/s)",
                round(best["recomputed"]["rps"], 1),
                target="ratio >= 3",
                size=len(customers),
                note=f"same answers: {same}",
                extra={
                    name: {k: round(v, 3) for k, v in figure.items()}
                    for name, figure in best.items()
                },
            )
        )
        record(
            Figure(
                "segment-reads",
                "scores read without HTTP, stored (reads/s)",
                round(alone["stored"], 1),
                "reads/s",
                "the same read recomputed from orders (reads/s)",
                round(alone["recomputed"], 1),
                target="ratio >= 5",
                size=len(customers),
            )
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
