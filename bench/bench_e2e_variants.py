"""Which process layout and Kafka client settings ``make run`` should use: each variant of
the default deployment end to end, against the default itself in the same run.

usage: python bench/bench_e2e_variants.py [--quick] [--orders N] [--only a,b] [--figures PATH]

Each variant is the default deployment (``bench_e2e.Deployment``: ``python -m
devtools.devrun`` on SQLite, fresh ports and data) with a few environment variables set.
For each: warm up (500 orders), then N realistic orders (default 20,000; --quick 2,000)
in 500-order batches over 4 connections, timed until every consumer group's lag is zero;
CPU per order of every process (broker included) from /proc. The default runs first and
last; its figure is the mean of the two, and each variant is read against it.

Variants (``--only`` picks some):

- ``combined``: one process per service, API, consumers and relay together
  (``CRM_RUN_LAYOUT=combined``; make run's default until api-apart measured ahead, and the
  layout docker-compose.yml runs);
- ``relay-apart``: ingest's outbox relay and raw consumer in their own process, the others
  combined (``CRM_RUN_LAYOUT=relay-apart``; bench_ingest measured it fastest for ingest
  alone);
- ``api-apart``: profile, segment and campaign each serve their API from one process and
  consume in another at a lower CPU priority (``CRM_RUN_LAYOUT=api-apart``, the default:
  against the default it measures the noise);
- ``no-compression``: producers send uncompressed (``CRM_KAFKA_COMPRESSION=none``);
- ``linger-20``: producers wait up to 20 ms to fill a batch (``CRM_KAFKA_LINGER_MS=20``);
- ``fetch-64k``: fetches wait for 64 KiB or 250 ms (``CRM_KAFKA_FETCH_MIN_BYTES``,
  ``CRM_KAFKA_FETCH_MAX_WAIT_MS``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_e2e import Deployment, finish_posting, start_posting, sustained  # noqa: E402
from bench.e2e_load import Orders  # noqa: E402
from bench.e2e_observe import LagMonitor  # noqa: E402
from bench.figures import Figure, record, use_sink  # noqa: E402

VARIANTS: dict[str, dict[str, str]] = {
    "combined": {"CRM_RUN_LAYOUT": "combined"},
    "relay-apart": {"CRM_RUN_LAYOUT": "relay-apart"},
    "api-apart": {"CRM_RUN_LAYOUT": "api-apart"},
    "no-compression": {"CRM_KAFKA_COMPRESSION": "none"},
    "linger-20": {"CRM_KAFKA_LINGER_MS": "20"},
    "fetch-64k": {"CRM_KAFKA_FETCH_MIN_BYTES": "65536", "CRM_KAFKA_FETCH_MAX_WAIT_MS": "250"},
}


def measure(env: dict[str, str], orders: Orders, count: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-variant-") as tmp:
        deployment = Deployment("sqlite", Path(tmp), extra_env=env)
        monitor = LagMonitor(deployment.bootstrap)
        try:
            warm = orders.bodies(run + "w", 500, 500)
            finish_posting(*start_posting(deployment, warm, "/v1/orders/batch", 1))
            monitor.wait_caught_up(500)
            return sustained(deployment, monitor, orders.bodies(run, count, 500), 500, 500 + count)
        finally:
            monitor.close()
            deployment.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--only", help="comma-separated variant names")
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    args = parser.parse_args()
    use_sink(args.figures)
    count = args.orders or (2_000 if args.quick else 20_000)
    names = args.only.split(",") if args.only else list(VARIANTS)
    orders = Orders(customers=max(count // 3, 1000), seed=13)
    results: dict[str, dict[str, Any]] = {}
    defaults = [measure({}, orders, count)]
    for name in names:
        results[name] = measure(VARIANTS[name], orders, count)
    defaults.append(measure({}, orders, count))
    rate = statistics.mean(d["orders_per_second"] for d in defaults)
    cpu = statistics.mean(d["cpu_us_per_order_total"] for d in defaults)
    rates = " / ".join(f"{d['orders_per_second']:,.0f}" for d in defaults)
    cpus = " / ".join(str(d["cpu_us_per_order_total"]) for d in defaults)
    print(f"default layout and settings: {rates} orders/s, {cpus} us CPU/order", flush=True)
    for name, result in results.items():
        print(
            f"{name:>15}: {result['orders_per_second']:,.0f} orders/s "
            f"({result['orders_per_second'] / rate:.2f}x), {result['cpu_us_per_order_total']} us "
            f"CPU/order ({result['cpu_us_per_order_total'] / cpu:.2f}x): "
            f"{result['cpu_us_per_order']}",
            flush=True,
        )
        record(
            Figure(
                "e2e-variants",
                f"sustained orders/s, 500-order batches, {name} "
                f"({' '.join(f'{k}={v}' for k, v in VARIANTS[name].items())})",
                round(result["orders_per_second"]),
                "orders/s",
                "default layout and settings, same run (mean of first and last)",
                round(rate),
                size=count,
                extra=result,
            )
        )
        record(
            Figure(
                "e2e-variants",
                f"CPU us per order, all processes, {name}",
                result["cpu_us_per_order_total"],
                "us",
                "default layout and settings, same run",
                round(cpu, 1),
                note=f"{name}: "
                + ", ".join(f"{k} {v:.0f}" for k, v in result["cpu_us_per_order"].items()),
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
