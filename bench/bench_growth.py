"""Growth: does doubling the customers at most double the time? (issue 13, "Growth")

usage: python bench/bench_growth.py [--quick] [--sizes 100000,200000,400000] [--figures PATH]

For each size (default 100,000 / 200,000 / 400,000 customers; --quick 5,000 / 10,000),
each in fresh processes and databases (SQLite):

- the full rescoring of a batch recompute and of a policy change that rewrites most customers
  (``bench/bench_segment.py``'s seed, rescoring and policy phases: wall and CPU seconds,
  peak RSS);
- the campaign launch over an audience of that size (``bench/bench_campaign.py``).

Each figure's baseline is the same measure at half the size, in the same run; the target
is a ratio of at most 2.0 (doubling must not more than double the time). CPU seconds are
the figure held to it, as wall time on this shared machine moves with other work.
The 1,000,000-customer points are in the segment and campaign benches themselves;
10,000,000 is not run here (the full rescoring holds the whole scoring frame in memory:
see docs/performance.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, load_figures, record, use_sink  # noqa: E402


def segment(phase: str, n: int, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "bench/bench_segment.py",
            "--phase",
            phase,
            "--n",
            str(n),
            "--path",
            str(path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"segment {phase} at {n}: {out.stderr[-3000:]}")


def campaign(n: int, folder: Path) -> dict[str, Any]:
    sink = folder / f"campaign-{n}.jsonl"
    subprocess.run(
        [sys.executable, "bench/bench_campaign.py", "--customers", str(n), "--figures", str(sink)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    launch = next(f for f in load_figures(sink) if f.name.startswith("launch,"))
    return {"seconds": launch.value, **launch.extra}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes")
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    args = parser.parse_args()
    use_sink(args.figures)
    sizes = [
        int(s)
        for s in (args.sizes or ("5000,10000" if args.quick else "100000,200000,400000")).split(",")
    ]
    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        folder = Path(tmp)
        for n in sizes:
            db = folder / f"scores-{n}.db"
            segment("seed", n, db)
            sweep = segment("rescoring", n, db)
            policy = segment("policy", n, db)
            db.unlink()
            launch = campaign(n, folder)
            results[n] = {"batch recompute": sweep, "policy change": policy, "launch": launch}
            print(
                f"{n:>10,} customers: batch recompute {sweep['seconds_total']:.2f} s "
                f"({sweep['cpu_seconds_total']:.2f} s CPU, {sweep['peak_rss_mib']:.0f} MiB); "
                f"policy change {policy['seconds_total']:.2f} s ({policy['cpu_seconds_total']:.2f}"
                f" s CPU, {policy['peak_rss_mib']:.0f} MiB, {policy['changed']:,} rewritten); "
                f"campaign launch {launch['seconds']:.2f} s ({launch['cpu_seconds']} s CPU)",
                flush=True,
            )
    for small, large in itertools.pairwise(sizes):
        if large != 2 * small:
            continue
        for what, key in (
            ("full rescoring, batch recompute", "batch recompute"),
            ("full rescoring, policy change", "policy change"),
        ):
            record(
                Figure(
                    "growth",
                    f"{what}, {large:,} customers (CPU s)",
                    results[large][key]["cpu_seconds_total"],
                    "s",
                    f"same at {small:,} customers",
                    results[small][key]["cpu_seconds_total"],
                    "ratio <= 2.0",
                    size=large,
                    extra={
                        "wall_s": results[large][key]["seconds_total"],
                        "baseline_wall_s": results[small][key]["seconds_total"],
                        "peak_rss_mib": results[large][key]["peak_rss_mib"],
                    },
                )
            )
        record(
            Figure(
                "growth",
                f"campaign launch, {large:,} customers (CPU s)",
                float(results[large]["launch"]["cpu_seconds"]),
                "s",
                f"same at {small:,} customers",
                float(results[small]["launch"]["cpu_seconds"]),
                "ratio <= 2.0",
                size=large,
                extra={"wall_s": results[large]["launch"]["seconds"]},
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
