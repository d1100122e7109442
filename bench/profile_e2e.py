"""Where the CPU goes end to end: py-spy on every process of the default deployment.

usage: python bench/profile_e2e.py [--orders N] [--db sqlite] [--top 25] [--out DIR]

Starts the deployment as bench_e2e.py does, POSTs N realistic orders in 500-order batches
while ``py-spy record`` samples every service process and the supervisor (``--nonblocking``:
the processes run undisturbed), waits until every consumer group has caught up, then prints
each process's hottest functions by own samples and by inclusive samples within the
project's code. Raw folded stacks stay in DIR (default: a temporary folder, printed).
py-spy is a profiling tool, not a dependency: ``pip install py-spy`` into the venv first.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_e2e import Deployment, finish_posting, start_posting  # noqa: E402
from bench.e2e_load import Orders  # noqa: E402
from bench.e2e_observe import LagMonitor, descendants  # noqa: E402

#: leaf frames of a waiting thread (py-spy samples them while they hold no CPU)
IDLE = ("Condition.wait", "Event.wait", "select (", "poll (", "sleep", "_recv_into", "accept (")


def summarise(folded: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE):
            continue  # a thread waiting for work, not spending CPU
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if "(services/" in frame or "(shared/" in frame:
                inclusive[frame] += n
    print(f"\n=== {folded.stem}: {total} samples")
    print("  own time:")
    for frame, n in own.most_common(top):
        print(f"    {100 * n / max(total, 1):5.1f}%  {frame[:150]}")
    print("  inclusive, project code:")
    for frame, n in inclusive.most_common(top):
        print(f"    {100 * n / max(total, 1):5.1f}%  {frame[:150]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=30_000)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = args.out or Path(tempfile.mkdtemp(prefix="profile-e2e-"))
    out.mkdir(parents=True, exist_ok=True)
    orders = Orders(customers=max(args.orders // 3, 1000), seed=5)
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        deployment = Deployment(args.db, Path(tmp))
        monitor = LagMonitor(deployment.bootstrap)
        spies = []
        try:
            warm = orders.bodies(run + "w", 500, 500)
            finish_posting(*start_posting(deployment, warm, "/v1/orders/batch", 1))
            monitor.wait_caught_up(500)
            bodies = orders.bodies(run, args.orders, 500)
            for pid, label in descendants(deployment.process.pid).items():
                if label in ("broker", "other"):
                    continue
                command = [spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "200"]
                spies.append(
                    subprocess.Popen(
                        [*command, "--format", "raw", "--output", str(out / f"{label}-{pid}.txt")],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(1)
            started = time.perf_counter()
            finish_posting(*start_posting(deployment, bodies, "/v1/orders/batch", 4))
            monitor.wait_caught_up(500 + args.orders)
            print(f"{args.orders:,} orders caught up in {time.perf_counter() - started:.1f} s")
        finally:
            for process in spies:
                process.send_signal(signal.SIGINT)
            for process in spies:
                process.wait(60)
            monitor.close()
            deployment.stop()
    for folded in sorted(out.glob("*.txt")):
        summarise(folded, args.top)
    print(f"\nfolded stacks in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
