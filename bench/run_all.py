"""`make bench` / `make bench-quick`: every bench, one table, two plots.

usage: python bench/run_all.py [--quick] [--only ingest,profile,...] [--out DIR]

Runs each bench script in turn (each in its own processes, one after the other: the machine
has two cores) with ``--figures``, then writes into DIR (default bench/results/):

- ``latest.md`` (``quick.md`` with --quick): one table of figure, value, the baseline
  measured in the same run, ratio, target and pass / short, under the machine it ran on
  (cores, Python, SQLite and PostgreSQL versions, load average before and after, commit);
- ``latest.json``: the same figures, machine readable;
- ``throughput.png``: every rate beside its same-run baseline;
- ``latency.png``: latency percentiles over the offered load.

A bench that crashes fails the run (exit status 1) after the others have run; a figure
short of its target does not (the table says so).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, load_figures  # noqa: E402

#: (name, script arguments, extra arguments of the full run). The full run is sized to end
#: in under 20 minutes on the 2-core machine: the rescoring, sweep and launch at 1,000,000
#: customers (and the rescoring and sweep at 10,000,000) run once, in the growth bench
#: (which forwards the campaign bench's own 1,000,000-customer figures); the segment bench
#: adds only its CLV summary (2,000,000 orders: lifetimes alone takes ~70 s at 10,000,000)
#: and consumer phases; the sweep bench compares the sweep with the full rescoring at
#: 200,000 customers; the ingest bench runs its import at 200,000 rows (its default
#: 1,000,000 alone takes ~90 s; the import's peak memory is flat in the row count); the
#: end-to-end benches run 20,000 orders (15,000 with replicas and per variant), each
#: rate timed over a window of 5 s or more; the variants leave out compression off (it
#: cost CPU in every run measured: docs/performance.md). bench_consumers (an A/B tool of
#: consumer changes against another tree) is not part of it. At e123308 on a slow day this
#: took 21 minutes, so the reads' windows went from 10 to 5 s and the half-rate probing
#: from 15 to 10 s. At 5c448a3, on a machine at half its usual speed (the bare producer's
#: CPU per order 59 us against 26-30 that day), it took 20.7 minutes: the end-to-end runs
#: went from 30,000 to 20,000 orders (each rate is still timed over 8 s or more) and the
#: scale-out runs from 20,000 to 15,000. The variants are the two other process layouts
#: (the default is api-apart); fetch-64k (fuller fetches: 1.07 x orders/s and 0.88 x CPU
#: at 962389c, but up to 250 ms more per hop from POST to scores) is left out since
#: api-apart came in.
BENCHES: list[tuple[str, list[str], list[str]]] = [
    ("ingest", ["bench/bench_ingest.py", "--split"], ["--import-rows", "200000"]),
    ("ratelimit", ["bench/bench_ratelimit.py"], ["--requests", "10000"]),
    ("profile", ["bench/bench_profile.py"], ["--orders", "50000", "--seconds", "5"]),
    ("segment", ["bench/bench_segment.py"], ["--only", "clv,consumer", "--orders", "2000000"]),
    # GET /v1/customers/{id}/scores served from the stored rows vs recomputed per request
    ("segment-reads", ["bench/bench_segment_reads.py"], ["--orders", "100000", "--seconds", "5"]),
    ("clv", ["bench/bench_clv.py"], []),
    # the day sweep vs the full rescoring at a day boundary (same changes checked)
    ("sweep", ["bench/bench_sweep.py"], ["--customers", "200000"]),
    ("campaign", ["bench/bench_campaign.py"], []),
    # 100,000 / 1,000,000 / 10,000,000 customers: rescoring, sweep, policy change, launch
    ("growth", ["bench/bench_growth.py"], []),
    ("e2e", ["bench/bench_e2e.py"], ["--orders", "20000", "--single", "3000", "--seconds", "10"]),
    # scaling out (full run only): 2 profile + 2 segment consumers, 6 partitions, PostgreSQL
    (
        "e2e-replicas",
        ["bench/bench_e2e.py", "--replicas", "2", "--partitions", "6"],
        ["--orders", "15000"],
    ),
    # make run's layout and Kafka client settings: each variant against the default, same run
    (
        "e2e-variants",
        ["bench/bench_e2e_variants.py"],
        ["--orders", "15000", "--only", "combined,relay-apart"],
    ),
]
FULL_ONLY = {"e2e-replicas", "e2e-variants"}
#: in the quick run only: the full run has their figures from the growth bench
QUICK_ONLY = {"campaign"}


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _postgres_version() -> str:
    try:
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not reachable"
    return out.stdout.strip() or "not reachable"


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> dict[str, str]:
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short", "HEAD")
        + (" (with uncommitted changes)" if dirty else ""),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(),
        "platform": platform.platform(),
    }


#: what bench/e2e_load.py reports for a percentile of requests never answered in time
UNANSWERED_MS = 1e9


def _unanswered(value: float | None, unit: str) -> bool:
    return unit == "ms" and value is not None and value >= UNANSWERED_MS


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def write_table(
    out: Path,
    figures: list[Figure],
    info: dict[str, str],
    command: str,
    runs: list[dict[str, object]],
) -> None:
    lines = [
        f"# Benchmark results ({'quick' if 'quick' in out.name else 'full'} run)",
        "",
        f"`{command}` at commit {info['commit']}, {info['date']}.",
        "",
        f"Machine: {info['cores']} cores ({info['platform']}), Python {info['python']}, "
        f"SQLite {info['sqlite']}, PostgreSQL {info['postgresql']}. "
        f"Load average (1/5/15 min) before: {info['load_before']}; after: {info['load_after']}.",
        "",
        "The machine is shared: read a figure against its baseline (measured in the same run, "
        "just before or beside it). A target on `ratio` is held against the baseline.",
        "",
        "| bench | figure | value | baseline (same run) | baseline value | ratio | target | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        ratio = f.ratio
        value = "not kept up" if _unanswered(f.value, f.unit) else f"{_fmt(f.value)} {f.unit}"
        baseline = "not kept up" if _unanswered(f.baseline, f.unit) else _fmt(f.baseline)
        if _unanswered(f.value, f.unit) or _unanswered(f.baseline, f.unit):
            ratio = None  # a ratio of a stand-in for "never" means nothing
        lines.append(
            f"| {f.bench} | {f.name} | {value} | {f.baseline_name or '-'} "
            f"| {baseline} | {'-' if ratio is None else f'{ratio:.2f}x'} "
            f"| {f.target or '-'} | {f.verdict()} |"
        )
    lines += ["", "| bench | wall s | exit status |", "|---|---|---|"]
    lines += [f"| {r['bench']} | {r['seconds']:.0f} | {r['status']} |" for r in runs]
    notes = [f for f in figures if f.note]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {f.bench}, {f.name}: {f.note}" for f in notes]
    out.write_text("\n".join(lines) + "\n")


_AT_LOAD = re.compile(r"\s*at [\d,]+ rps")


def write_plots(folder: Path, figures: list[Figure], suffix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rates = [f for f in figures if f.unit.endswith("/s") and f.load is None]
    if rates:
        fig, ax = plt.subplots(figsize=(10, 0.5 * len(rates) + 1.5))
        names = [f"{f.bench}: {f.name}"[:90] for f in rates]
        ys = range(len(rates))
        ax.barh([y + 0.2 for y in ys], [f.value for f in rates], height=0.4, label="value")
        ax.barh(
            [y - 0.2 for y in ys],
            [f.baseline or 0 for f in rates],
            height=0.4,
            label="same-run baseline",
            alpha=0.6,
        )
        ax.set_yticks(list(ys), names, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("per second (log scale)")
        ax.set_title("Throughput against its same-run baseline")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / f"throughput{suffix}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    loaded = [f for f in figures if f.load is not None]
    if loaded:
        fig, ax = plt.subplots(figsize=(13, 6))
        series: dict[str, list[Figure]] = {}
        for f in loaded:
            series.setdefault(f"{f.bench}: {_AT_LOAD.sub('', f.name)}", []).append(f)
        colours = plt.get_cmap("tab10" if len(series) <= 10 else "tab20").colors  # type: ignore[attr-defined]
        for (name, points), colour in zip(series.items(), itertools.cycle(colours)):
            points.sort(key=lambda f: f.load or 0)
            ax.plot(
                [f.load for f in points],
                [f.value for f in points],
                marker="o",
                color=colour,
                label=name[:80],
            )
            if points[0].baseline is not None:
                ax.plot(
                    [f.load for f in points],
                    [f.baseline for f in points],
                    linestyle="--",
                    marker="x",
                    color=colour,
                    alpha=0.6,
                    label=f"  baseline: {points[0].baseline_name}"[:80],
                )
        ax.set_xlabel("offered load (requests/s or orders/s)")
        ax.set_ylabel(loaded[0].unit)
        ax.set_yscale("log")
        ax.set_title("Latency over load (dashed: the same-run baseline; 1e9 ms: not answered)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        path = folder / f"latency{suffix}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="every bench at small size")
    parser.add_argument("--only", help="comma-separated bench names")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the plots from latest.json / quick.json"
    )
    args = parser.parse_args()
    if args.replot:
        stem = "quick" if args.quick else "latest"
        saved = json.loads((args.out / f"{stem}.json").read_text())
        figures = [Figure(**f) for f in saved["figures"]]
        print(write_plots(args.out, figures, "-quick" if args.quick else ""))
        return 0
    only = set(args.only.split(",")) if args.only else None
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    sink = args.out / f"{stem}.jsonl"
    sink.unlink(missing_ok=True)
    info = machine()
    info["load_before"] = _load()
    runs: list[dict[str, object]] = []
    chosen = []
    for name, command, full_only in BENCHES:
        if only is not None and name not in only:
            continue
        if not (ROOT / command[0]).exists() or name in (FULL_ONLY if args.quick else QUICK_ONLY):
            continue
        argv = [sys.executable, *command, "--figures", str(sink)]
        chosen.append((name, argv + (["--quick"] if args.quick else full_only)))
    # The quick run proves every bench runs (CI), in under two minutes: the end-to-end
    # bench, mostly waiting for its deployment to start and its groups to join, runs beside
    # the others (its figures and theirs are noisier for it; the full run is sequential).
    beside = [(n, a) for n, a in chosen if args.quick and n == "e2e"]
    background = []
    for name, argv in beside:
        print(f"== {name} (beside the others): {' '.join(argv[1:])} (load {_load()})", flush=True)
        background.append((name, time.perf_counter(), subprocess.Popen(argv, cwd=ROOT)))
    for name, argv in chosen:
        if (name, argv) in beside:
            continue
        print(f"== {name}: {' '.join(argv[1:])} (load {_load()})", flush=True)
        started = time.perf_counter()
        status = subprocess.run(argv, cwd=ROOT).returncode
        runs.append({"bench": name, "seconds": time.perf_counter() - started, "status": status})
    for name, started, process in background:
        status = process.wait()
        runs.append({"bench": name, "seconds": time.perf_counter() - started, "status": status})
    failed = any(run["status"] != 0 for run in runs)
    info["load_after"] = _load()
    figures = load_figures(sink)
    command = "make bench-quick" if args.quick else "make bench"
    if only is not None:
        command = f"python bench/run_all.py {'--quick ' if args.quick else ''}--only {args.only}"
    table = args.out / f"{stem}.md"
    write_table(table, figures, info, command, runs)
    (args.out / f"{stem}.json").write_text(
        json.dumps(
            {"machine": info, "runs": runs, "figures": [asdict(f) for f in figures]},
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    sink.unlink(missing_ok=True)
    plots = write_plots(args.out, figures, "-quick" if args.quick else "")

    def shown(path: Path) -> str:
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)

    print(f"wrote {shown(table)}, " + ", ".join(shown(p) for p in plots))
    print(table.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
