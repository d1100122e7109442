"""Growth: 100,000, 1,000,000 and 10,000,000 customers (issue 13, "Growth").

usage: python bench/bench_growth.py [--quick] [--sizes 100000,1000000,10000000]
                                    [--policy-max N] [--launch-max N] [--figures PATH]

For each size (--quick: 2,000 / 20,000), on SQLite, each measured step in its own process
(its peak RSS is its own), with the segment service's SQLite settings:

- the full rescoring, the daily batch (``rescore_all``: cut points from everyone, then
  pages of 250,000 customers; ~1 % rewritten): wall and CPU seconds, peak RSS;
- the day-boundary stage sweep one day later (``services/segment/sweep.py``);
- up to ``--policy-max`` (1,000,000) customers: the full rescoring after a policy change
  that rewrites and publishes most customers (``bench_segment.py``'s policy phase);
- up to ``--launch-max`` (1,000,000) customers: the campaign launch over an audience of that
  size (``bench/bench_campaign.py``, whose figures at that size are forwarded).

Seeding: ``bench_segment.py``'s seed (aggregates and a snapshot of the day before) up to
1,000,000 customers; a size ten times a seeded one is that database copied ten times over
under new customer ids in SQL (the same distribution; secondary indexes rebuilt once), as
generating and scoring 10,000,000 customers in Python alone takes ~5 minutes.

Growth figures: each step's CPU seconds against the previous size's scaled by the size
ratio, target ``ratio <= 1.0`` (doubling the customers must not more than double the time).
The 10,000,000-customer rescoring has its own targets: < 60 s and < 4 GiB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, load_figures, peak_rss_mib, record, use_sink  # noqa: E402


def child(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"{script} {' '.join(args)}: {out.stderr[-3000:]}")


def segment(phase: str, path: Path, n: int = 0) -> dict[str, Any]:
    args = ["--phase", phase, "--path", str(path)]
    return child("bench/bench_segment.py", *args, *(["--n", str(n)] if n else []))


def expand(source: Path, target: Path, times: int) -> None:
    """``target``: ``source``'s customers ``times`` over, under new ids (same distribution)."""
    shutil.copy(source, target)
    conn = sqlite3.connect(target)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-524288")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA threads=2")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(customer_scores)")]
    rest = ", ".join(columns[1:])
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'customer_scores' "
        "AND type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    for copy in range(1, times):
        conn.execute(
            f"INSERT INTO customer_scores (customer_id, {rest}) "
            f"SELECT 'x{copy}' || customer_id, {rest} FROM customer_scores "
            "WHERE customer_id NOT LIKE 'x%'"
        )
    for _, sql in indexes:
        conn.execute(sql)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def run_sweep(path: Path) -> None:
    """The day-boundary sweep one day after the rescoring (its day marked swept first)."""

    from bench.bench_segment import AS_OF
    from services.segment.config import Settings
    from services.segment.sweep import DaySweep, mark_swept
    from shared.db import Database

    db = Database.from_url(f"sqlite:///{path}", sqlite_pragmas=Settings().sqlite_pragmas)
    with db.unit_of_work() as session:
        mark_swept(session, AS_OF)
    started, cpu = time.perf_counter(), time.process_time()
    outcome = DaySweep(db).run(AS_OF + timedelta(days=1))
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    db.dispose()
    result = {
        "phase": "sweep",
        "customers": outcome.customers,
        "changed": outcome.events,
        "seconds_total": round(total, 2),
        "cpu_seconds_total": round(cpu, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    print("RESULT " + json.dumps(result), flush=True)


def campaign(n: int, folder: Path) -> tuple[dict[str, Any], list[Figure]]:
    sink = folder / f"campaign-{n}.jsonl"
    subprocess.run(
        [sys.executable, "bench/bench_campaign.py", "--customers", str(n), "--figures", str(sink)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    figures = load_figures(sink)
    launch = next(f for f in figures if f.name.startswith("launch,"))
    return {
        "seconds_total": launch.value,
        "cpu_seconds_total": launch.extra["cpu_seconds"],
    }, figures


STEPS = {
    "rescoring": "full rescoring, daily batch",
    "sweep": "day-boundary stage sweep",
    "policy": "full rescoring after a policy change",
    "launch": "campaign launch",
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes")
    parser.add_argument("--policy-max", type=int, default=1_000_000)
    parser.add_argument("--launch-max", type=int, default=1_000_000)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--times", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    args = parser.parse_args()
    if args.phase == "sweep":
        run_sweep(Path(args.path))
        return 0
    if args.phase == "expand":
        expand(Path(args.path), Path(args.target), args.times)
        return 0
    use_sink(args.figures)
    if args.quick:
        args.launch_max = 0  # make bench-quick runs the campaign bench itself
    default = "2000,20000" if args.quick else "100000,1000000,10000000"
    sizes = sorted(int(s) for s in (args.sizes or default).split(","))
    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        folder = Path(tmp)
        seeded: dict[int, Path] = {}
        for n in sizes:
            started = time.perf_counter()
            pristine = folder / f"seed-{n}.db"
            base = max((s for s in seeded if n % s == 0 and n > s), default=None)
            if n > 1_000_000 and base is not None:
                # in a child: a parent grown by SQLite's cache would lend its resident size
                # to the next children's peak (a forked child starts with the parent's)
                subprocess.run(
                    [
                        sys.executable,
                        "bench/bench_growth.py",
                        "--phase",
                        "expand",
                        "--path",
                        str(seeded[base]),
                        "--target",
                        str(pristine),
                        "--times",
                        str(n // base),
                    ],
                    cwd=ROOT,
                    check=True,
                )
            else:
                segment("seed", pristine, n)
            seeded[n] = pristine
            db = folder / f"work-{n}.db"
            shutil.copy(pristine, db)
            print(f"{n:>11,} customers seeded in {time.perf_counter() - started:.0f} s", flush=True)
            steps: dict[str, dict[str, Any]] = {"rescoring": segment("rescoring", db)}
            steps["sweep"] = child("bench/bench_growth.py", "--phase", "sweep", "--path", str(db))
            if n <= args.policy_max:
                steps["policy"] = segment("policy", db)
            db.unlink()
            for wal in folder.glob(f"work-{n}.db-*"):
                wal.unlink()
            if n <= args.launch_max:
                steps["launch"], campaign_figures = campaign(n, folder)
                if n == args.launch_max:
                    for figure in campaign_figures:  # the campaign bench's own figures
                        record(figure)
            results[n] = steps
            print(
                f"{n:>11,} customers: "
                + "; ".join(
                    f"{STEPS[k]} {v['seconds_total']:.2f} s ({v['cpu_seconds_total']:.2f} s CPU"
                    + (f", {v['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in v else "")
                    + (f", {v['changed']:,} changed" if "changed" in v else "")
                    + ")"
                    for k, v in steps.items()
                ),
                flush=True,
            )
    previous: int | None = None
    for n, steps in results.items():
        rescoring = steps["rescoring"]
        big = n >= 10_000_000
        before = results[previous]["rescoring"] if previous else None
        factor = n / previous if previous else 1.0
        record(
            Figure(
                "growth",
                f"{STEPS['rescoring']}, {n:,} customers: wall s",
                rescoring["seconds_total"],
                "s",
                f"same at {previous:,} customers x {factor:g}" if previous else None,
                round(before["seconds_total"] * factor, 2) if before else None,
                target="< 60" if big else None,
                size=n,
                extra={"phases": rescoring["phases"], "changed": rescoring["changed"]},
                note=f"{n:,} customers, phases (wall s): {rescoring['phases']}",
            )
        )
        record(
            Figure(
                "growth",
                f"{STEPS['rescoring']}, {n:,} customers: peak RSS MiB",
                rescoring["peak_rss_mib"],
                "MiB",
                f"same at {previous:,} customers" if previous else None,
                before["peak_rss_mib"] if before else None,
                target="< 4096" if big else None,
                size=n,
            )
        )
        previous = n
    for small, large in itertools.pairwise(sizes):
        factor = large / small
        for step, what in STEPS.items():
            if step not in results[large] or step not in results[small]:
                continue
            record(
                Figure(
                    "growth",
                    f"{what}, {large:,} customers (CPU s)",
                    results[large][step]["cpu_seconds_total"],
                    "s",
                    f"same at {small:,} customers x {factor:g}",
                    round(results[small][step]["cpu_seconds_total"] * factor, 2),
                    "ratio <= 1.0",
                    size=large,
                    extra={
                        "wall_s": results[large][step]["seconds_total"],
                        "baseline_wall_s": results[small][step]["seconds_total"],
                    },
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
