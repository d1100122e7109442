"""Profile benchmarks: consumer events/s on SQLite and GET /v1/customers/{id} latency.

usage: python bench/bench_profile.py [--quick] [--orders N] [--customers N] [--rates R,R]
                                     [--seconds S] [--only consumer,api] [--figures PATH]

Each measurement runs in its own process so its peak memory (ru_maxrss) is its own.

1. Consumer throughput. N orders (default 100,000; --quick 3,000) for N/2 customers, each
   followed by the segment.changed it causes (2N events), are produced to the embedded
   broker; then the profile consumer loop (decode, dedup, batch handler, one transaction
   per poll batch, offset commit) reads them all into a fresh SQLite database. The clock
   starts when the first poll batch has been processed (the ~3 s group join is reported
   apart), so the rate counts only the events processed after that: those inside the
   window (counting the first batch too inflated --quick by a third).
   Baselines in the same run: the same loop with a do-nothing batch handler (the platform's
   ceiling: decode + dedup + processed_events + commits), and the batch handler alone on
   pre-decoded events (no broker).
2. GET /v1/customers/{id} latency: a real uvicorn server (``python -m services.profile api``)
   on a free 127.0.0.1 port over a SQLite database of M customers (default 20,000; --quick
   2,000), loaded from a second process at fixed open-loop rates (default 200 and 1,000
   requests/s, 20 s each; --quick 1 s) by 16 threads on keep-alive sockets (raw HTTP/1.1: a thin
   client, so the machine's CPU goes to the server) on random customers. Latency is
   measured from the scheduled send time (so queueing counts); the server's CPU time per
   request is reported too (its capacity, independent of other load on the machine).
   Baseline in the same run: GET /healthz at the same rate (the HTTP stack alone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, peak_rss_mib, record, use_sink  # noqa: E402

T0 = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
ADMIN_KEY = "bench-admin-key"


def peak_mib() -> float:
    return peak_rss_mib()


def emit(result: dict[str, Any]) -> None:
    result["peak_rss_mib"] = round(peak_mib(), 1)
    print("RESULT " + json.dumps(result), flush=True)


def make_events(orders: int) -> list[Any]:
    """Each order (buyer, shipping, one item) followed by the segment change it causes."""
    from shared.events import (
        Order,
        OrderRecordedEvent,
        SegmentChangedEvent,
        SegmentChangedPayload,
    )

    events: list[Any] = []
    customers = max(orders // 2, 1)
    for i in range(orders):
        # a customer's two orders lie far apart in the stream (as in life), so batches
        # both create profiles and update ones written by earlier batches
        cid = f"tb_{i % customers:08d}"
        at = T0 + timedelta(minutes=i)
        order = Order.model_validate(
            {
                "order_id": f"T{i:09d}",
                "customer_id": cid,
                "status": "paid",
                "created_at": at,
                "paid_at": at,
                "updated_at": at,
                "currency": "CNY",
                "total_amount": "199.00",
                "channel": "tmall",
                "items": [
                    {
                        "sku": "A-1",
                        "name": "羊毛围巾",
                        "category": "accessories",
                        "brand": "Acme",
                        "unit_price": "99.50",
                        "quantity": 2,
                    }
                ],
                "buyer": {"name": "张三", "mobile": f"+86138{i % customers:08d}"},
                "shipping": {
                    "province": "浙江省",
                    "city": "杭州市",
                    "district": "西湖区",
                    "address": "文三路 100 号",
                },
            }
        )
        events.append(OrderRecordedEvent(source="ingest/bench", key=cid, data=order))
        change = SegmentChangedPayload.model_validate(
            {
                "customer_id": cid,
                "policy_version": 1,
                "as_of": at,
                "to": {
                    "recency_days": 0,
                    "frequency": 1 + i % 2,
                    "monetary": "199.00",
                    "r_score": 5,
                    "f_score": 1,
                    "m_score": 3,
                    "rfm_code": "513",
                    "rfm_segment": "new",
                    "lifecycle_stage": "new",
                    "value_quadrant": "pending",
                },
                "segments": ["vip"] if i % 7 == 0 else [],
            }
        )
        events.append(SegmentChangedEvent(source="segment", key=cid, data=change))
    return events


def fresh_db(folder: Path, name: str) -> tuple[Any, Any]:
    """A migrated SQLite database, tuned as the service tunes its own."""
    from services.profile.app import MIGRATIONS
    from services.profile.config import Settings
    from shared.db import Database, run_migrations

    url = f"sqlite:///{folder / name}"
    run_migrations(MIGRATIONS, url)
    db = Database.from_url(url, sqlite_pragmas=Settings(data_dir=folder).sqlite_pragmas)
    return url, db


# --------------------------------------------------------------------------- 1. consumer


def run_loop(
    broker: str, namespace: str, db: Any, handler: Any, total: int, group: str
) -> dict[str, float]:
    from services.profile.consumer import CONSUMED_TOPICS, TUNING
    from shared.bus import ConsumerLoop, Publisher
    from shared.runtime import tune_gc

    tune_gc()  # as the service command line does

    publisher = Publisher(broker, namespace)
    loop = ConsumerLoop(
        name="bench",
        bootstrap_servers=broker,
        group_id=group,
        topics=list(CONSUMED_TOPICS),
        db=db,
        publisher=publisher,
        batch_handler=handler,
        namespace=namespace,
        **TUNING,
    )
    started = time.perf_counter()
    loop.start()
    first = None
    cpu_first = 0.0
    before_window = 0
    while loop.processed_count < total:
        if first is None and loop.processed_count > 0:
            # the window opens here: what was processed before it does not count
            first, cpu_first = time.perf_counter(), time.process_time()
            before_window = loop.processed_count
        time.sleep(0.002)
    done, cpu_done = time.perf_counter(), time.process_time()
    loop.stop()
    publisher.close()
    first = first or started
    inside = loop.processed_count - before_window
    return {
        "join_seconds": round(first - started, 2),
        "seconds": round(done - first, 3),
        "events_in_window": inside,
        "events_per_second": round(inside / (done - first)),
        # CPU seconds of this process over the same window: less sensitive to other load
        "events_per_cpu_second": round(inside / max(cpu_done - cpu_first, 1e-9)),
    }


def bench_consumer(orders: int) -> None:
    from devtools.broker import EmbeddedBroker
    from services.profile import consuming
    from services.profile.config import Settings
    from shared import topics
    from shared.bus import Publisher
    from shared.events import encode_event

    events = make_events(orders)
    total = len(events)
    folder = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    settings = Settings(data_dir=folder)
    result: dict[str, Any] = {"bench": "consumer", "orders": orders, "events": total}

    # baseline A: the batch handler alone on decoded events (no broker, no dedup)
    from shared.runtime import tune_gc

    tune_gc()  # as the service command line does
    _, db = fresh_db(folder, "handler.db")
    t, cpu = time.perf_counter(), time.process_time()
    for start in range(0, total, 5000):
        with db.unit_of_work() as session:
            consuming.apply_events(session, events[start : start + 5000], settings)
    result["handler_only"] = {
        "events_per_second": round(total / (time.perf_counter() - t)),
        "events_per_cpu_second": round(total / (time.process_time() - cpu)),
    }
    db.dispose()

    with EmbeddedBroker(log_path=folder / "tansu.log") as broker:
        namespace = f"bench{os.getpid()}."
        publisher = Publisher(broker.bootstrap_servers, namespace)
        from services.profile.consumer import CONSUMED_TOPICS
        from shared.bus import ensure_topics

        ensure_topics(broker.bootstrap_servers, CONSUMED_TOPICS, 3, 1, namespace=namespace)
        t = time.perf_counter()
        publisher.publish_all(
            (
                topics.ORDERS if e.type == "order.recorded" else topics.SEGMENTS,
                e.key,
                encode_event(e),
            )
            for e in events
        )
        result["produce_seconds"] = round(time.perf_counter() - t, 2)
        publisher.close()

        # baseline B: the platform consumer loop with a do-nothing handler
        _, db = fresh_db(folder, "noop.db")
        result["noop_loop"] = run_loop(
            broker.bootstrap_servers, namespace, db, lambda s, m: None, total, "bench-noop"
        )
        db.dispose()

        # the profile consumer
        from services.profile.handlers import make_batch_handler

        _, db = fresh_db(folder, "profile.db")
        result["profile_loop"] = run_loop(
            broker.bootstrap_servers,
            namespace,
            db,
            make_batch_handler(settings),
            total,
            "bench-profile",
        )
        with db.sessions() as session:
            from sqlalchemy import text

            result["profiles_written"] = session.execute(
                text("SELECT count(*) FROM profiles")
            ).scalar_one()
        db.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    emit(result)


# --------------------------------------------------------------------------- 2. API latency

LOAD_SCRIPT = r"""
# Open-loop load over raw keep-alive HTTP/1.1 sockets: a client this thin (about a tenth
# of httpx's CPU per request) leaves the machine's two cores to the server under test.
import json, random, socket, sys, threading, time
url, key, ids, rate, seconds, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
host, port = url.split("//", 1)[1].split(":")
total = int(rate * seconds)
lock = threading.Lock()
counter = [0]
lat, errors = [], [0]
start = time.perf_counter() + 0.2

def connect():
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, sock.makefile("rb")

def get(sock, reader, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n\r\n".encode())
    status = int(reader.readline().split()[1])
    length = 0
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status

def worker():
    sock, reader = connect()
    rnd = random.Random()
    while True:
        with lock:
            i = counter[0]; counter[0] += 1
        if i >= total:
            sock.close()
            return
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        path = "/healthz" if kind == "healthz" else f"/v1/customers/tb_{rnd.randrange(ids):08d}"
        if get(sock, reader, path) != 200:
            errors[0] += 1
        lat.append(time.perf_counter() - due)

threads = [threading.Thread(target=worker) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.perf_counter() - start
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(json.dumps({"requests": len(lat), "errors": errors[0], "achieved_rps": round(len(lat) / elapsed),
                  "p50_ms": round(q(0.50), 2), "p90_ms": round(q(0.90), 2), "p99_ms": round(q(0.99), 2),
                  "max_ms": round(lat[-1] * 1000, 2)}))
"""


def bench_api(customers: int, rate: float, seconds: float) -> None:
    import httpx

    from devtools.broker import EmbeddedBroker, free_port
    from services.profile import consuming
    from services.profile.config import Settings

    folder = Path(tempfile.mkdtemp(prefix="bench-profile-api-"))
    url, db = fresh_db(folder, "api.db")
    events = make_events(customers * 2)
    settings = Settings(data_dir=folder)
    for start in range(0, len(events), 1000):
        with db.unit_of_work() as session:
            consuming.apply_events(session, events[start : start + 1000], settings)
    db.dispose()
    port = free_port()
    broker = EmbeddedBroker(log_path=folder / "tansu.log").start()
    env = {
        **os.environ,
        "PROFILE_DATABASE_URL": url,
        "PROFILE_PORT": str(port),
        "PROFILE_LOG_LEVEL": "WARNING",
        "CRM_API_KEY": ADMIN_KEY,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "CRM_TOPIC_NAMESPACE": f"benchapi{os.getpid()}.",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "services.profile", "api"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        sample = httpx.get(base + "/v1/customers/tb_00000001", headers={"X-API-Key": ADMIN_KEY})
        assert sample.status_code == 200, sample.text
        result: dict[str, Any] = {
            "bench": "api",
            "customers": customers,
            "rate": rate,
            "seconds": seconds,
            "response_bytes": len(sample.content),
        }

        def server_cpu() -> float:
            with open(f"/proc/{server.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        for kind in ("warmup", "healthz", "profile"):
            cpu_before = server_cpu()
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    LOAD_SCRIPT,
                    base,
                    ADMIN_KEY,
                    str(customers),
                    str(rate),
                    str(2 if kind == "warmup" else seconds),
                    "profile" if kind == "warmup" else kind,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            if kind != "warmup":
                result[kind] = json.loads(out)
                # the server's own CPU per request: its capacity, whatever else runs here
                result[kind]["server_cpu_ms_per_request"] = round(
                    (server_cpu() - cpu_before) * 1000 / max(result[kind]["requests"], 1), 3
                )
        with open(f"/proc/{server.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM"):
                    result["server_peak_rss_mib"] = round(int(line.split()[1]) / 1024, 1)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    emit(result)


# --------------------------------------------------------------------------- driver


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--customers", type=int)
    parser.add_argument("--rates", help="requests/s of the API phase (200,1000; --quick 1000)")
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)  # one child's rate
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--only", default="consumer,api")
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_sink(args.figures)
    orders = args.orders or (3_000 if args.quick else 100_000)
    customers = args.customers or (2_000 if args.quick else 20_000)
    seconds = args.seconds or (1.0 if args.quick else 20.0)
    rates = args.rates or ("1000" if args.quick else "200,1000")
    if args.child == "consumer":
        bench_consumer(orders)
        return 0
    if args.child == "api":
        bench_api(customers, args.rate, seconds)
        return 0
    runs = [
        (part, rate)
        for part in args.only.split(",")
        for rate in ([0.0] if part == "consumer" else [float(r) for r in rates.split(",")])
    ]
    for part, rate in runs:
        command = [
            sys.executable,
            __file__,
            "--child",
            part,
            "--orders",
            str(orders),
            "--customers",
            str(customers),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
        ]
        out = subprocess.run(command, capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
                print(json.dumps(result, indent=2, ensure_ascii=False))
                record_figures(result)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
    return 0


def record_figures(result: dict[str, Any]) -> None:
    if result["bench"] == "consumer":
        loop, noop = result["profile_loop"], result["noop_loop"]
        size = result["events"]
        for key, label in (("events_per_second", "wall"), ("events_per_cpu_second", "CPU")):
            record(
                Figure(
                    "profile",
                    f"consumer events/s ({label}), {size:,} events",
                    loop[key],
                    "events/s",
                    "same loop, do-nothing handler",
                    noop[key],
                    ">= 10000",
                    size=size,
                    extra={"events_in_window": loop["events_in_window"]},
                )
            )
        return
    rate = result["rate"]
    for quantile in ("p50", "p99"):
        record(
            Figure(
                "profile",
                f"GET /v1/customers/{{id}} {quantile} at {rate:,.0f} rps (ms)",
                result["profile"][f"{quantile}_ms"],
                "ms",
                f"GET /healthz {quantile}, same rate",
                result["healthz"][f"{quantile}_ms"],
                "< 10" if quantile == "p99" else None,
                load=rate,
                size=result["customers"],
                note="idle system (no orders streaming)",
                extra={
                    "achieved_rps": result["profile"]["achieved_rps"],
                    "server_cpu_ms_per_request": result["profile"]["server_cpu_ms_per_request"],
                },
            )
        )


if __name__ == "__main__":
    sys.exit(main())
