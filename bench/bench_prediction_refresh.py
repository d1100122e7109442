"""The per-event refresh of predictive CLV (services/segment/prediction_refresh.py): the
consumer's batch handler with and without it, same run, alternating (A/B).

SQLite in a temporary directory: CUSTOMERS simulated customers (tests' BG/NBD story),
one CLV run, then ROUNDS x 2 batches of BATCH new orders of customers with predictions,
each batch once with the refresh and once with it replaced by a no-op. Prints the median
batch time of each and their ratio; say the load (``cat /proc/loadavg``) with it.

    python bench/bench_prediction_refresh.py [--customers 3000] [--batch 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.segment import clv_runs, per_event, prediction_refresh, predictive
from tests.segment.helpers import NOW, database, order, recorded
from tests.segment.test_predictive import simulated_orders


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = database(f"sqlite:///{tmp}/segment.db")
        orders = simulated_orders(args.customers, "EUR", 1)
        with db.unit_of_work() as session:
            per_event.apply_messages(session, [recorded(o) for o in orders], NOW)
        options = predictive.ClvOptions(
            min_customers=100, min_repeat_customers=20, min_history_days=90
        )
        with db.unit_of_work() as session:
            run = clv_runs.run(session, NOW, options)
        assert run.fits[0].status == "ok", run.fits[0].reason
        real = prediction_refresh.refresh
        timings: dict[str, list[float]] = {"with refresh": [], "without": []}
        serial = 0
        for _ in range(args.rounds):
            for label in ("with refresh", "without"):
                prediction_refresh.refresh = real if label == "with refresh" else _noop  # type: ignore[assignment]
                batch = []
                for _ in range(args.batch):
                    serial += 1
                    customer = f"EUR-c{(serial * 7) % args.customers}"
                    batch.append(
                        recorded(order(f"bench-{serial}", customer, days_ago=0.1, currency="EUR"))
                    )
                started = time.perf_counter()
                with db.unit_of_work() as session:
                    per_event.apply_messages(session, batch, NOW)
                timings[label].append(time.perf_counter() - started)
        prediction_refresh.refresh = real
    a, b = (statistics.median(timings[k]) for k in ("with refresh", "without"))
    print(f"{args.customers} customers, batches of {args.batch} orders, {args.rounds} rounds")
    print(
        f"median batch with refresh {a * 1000:.1f} ms, without {b * 1000:.1f} ms, ratio {a / b:.2f}"
    )
    print(f"refresh cost per order {(a - b) / args.batch * 1e6:.0f} us")


def _noop(*args: object, **kwargs: object) -> int:
    return 0


if __name__ == "__main__":
    main()
