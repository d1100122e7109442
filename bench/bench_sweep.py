"""The day-boundary sweep against the full rescoring it replaces, at one boundary.

usage: python bench/bench_sweep.py [--quick] [--customers N] [--figures PATH]

Seeds N customers on SQLite (default 1,000,000; --quick 20,000) as bench_segment.py
does (aggregates and a snapshot of the day before), runs one full rescoring then (cut
points stored, the day marked swept), and copies the database. Then, one day boundary
later, from the same state:

- baseline: the full rescoring with the same cut points (``rescore_all(recompute=False)``:
  what the daily job did to move stages), on one copy;
- the day sweep (``services/segment/sweep.py``) on the other copy.

Both publish the same changes (checked: the same customers and the same stored state);
printed: wall and CPU seconds of each, the ratio, the customers each read / rescored, and
the load average (the machine is shared: compare the ratio, not the absolute figures).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_segment import AS_OF, seed_aggregates  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.figures import Figure, record, use_sink  # noqa: E402
from services.segment import rescoring  # noqa: E402
from services.segment.sweep import DaySweep, mark_swept  # noqa: E402
from shared.db import Database  # noqa: E402

YESTERDAY = AS_OF - timedelta(days=1)


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _state(db: Database) -> list[tuple]:
    with db.sessions() as session:
        return list(
            session.execute(
                text(
                    "SELECT customer_id, rfm_code, rfm_segment, lifecycle_stage, value_quadrant, "
                    "segments FROM customer_scores ORDER BY customer_id"
                )
            )
        )


def _published(db: Database) -> set[str]:
    with db.sessions() as session:
        return set(session.execute(text("SELECT key FROM outbox")).scalars())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--figures", help="append the headline figure here (JSON lines)")
    ns = parser.parse_args()
    use_sink(ns.figures)
    n = ns.customers or (20_000 if ns.quick else 1_000_000)
    print(f"day sweep vs full rescoring, {n:,} customers on SQLite; load {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        base_path, sweep_path = Path(tmp) / "full.db", Path(tmp) / "sweep.db"
        started = time.perf_counter()
        seed_aggregates(n, base_path)
        db = Database.from_url(f"sqlite:///{base_path}")
        with db.unit_of_work() as session:
            rescoring.rescore_all(session, YESTERDAY)
            mark_swept(session, YESTERDAY)
            session.execute(text("DELETE FROM outbox"))
        db.dispose()
        shutil.copy(base_path, sweep_path)
        print(f"  seeded and scored the day before in {time.perf_counter() - started:.1f}s")

        full = Database.from_url(f"sqlite:///{base_path}")
        wall, cpu = time.perf_counter(), time.process_time()
        with full.unit_of_work() as session:
            outcome = rescoring.rescore_all(session, AS_OF, recompute=False)
        full_wall, full_cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"  baseline full rescoring (same cut points): {full_wall:.2f}s wall, "
            f"{full_cpu:.2f}s CPU; {outcome.customers:,} customers read, "
            f"{outcome.changed:,} changed; load {_load()}"
        )

        swept = Database.from_url(f"sqlite:///{sweep_path}")
        wall, cpu = time.perf_counter(), time.process_time()
        result = DaySweep(swept).run(AS_OF)
        sweep_wall, sweep_cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"  day sweep ({result.swept_after} -> {result.swept_through}): {sweep_wall:.2f}s "
            f"wall, {sweep_cpu:.2f}s CPU; {result.customers:,} customers rescored, "
            f"{result.events:,} changed; load {_load()}"
        )
        print(
            f"  ratio sweep / full rescoring: {sweep_wall / full_wall:.3f} wall, "
            f"{sweep_cpu / full_cpu:.3f} CPU"
        )
        same_changes = _published(full) == _published(swept)
        same_state = _state(full) == _state(swept)
        print(f"  same customers published: {same_changes}; same stored state: {same_state}")
        record(
            Figure(
                "sweep",
                f"day sweep at a day boundary, {n:,} customers (wall s)",
                round(sweep_wall, 3),
                "s",
                "full rescoring with the same cut points (wall s)",
                round(full_wall, 3),
                size=n,
                note=f"same changes: {same_changes}, same state: {same_state}",
                extra={"sweep_cpu_s": round(sweep_cpu, 3), "full_cpu_s": round(full_cpu, 3)},
            )
        )
        full.dispose()
        swept.dispose()
    return 0 if same_changes and same_state else 1


if __name__ == "__main__":
    sys.exit(main())
