"""Ingest throughput: orders/s through POST /v1/orders/batch into Kafka, single-order
requests/s, and peak memory of a large CSV import; against raw kafka-python producing the
same events in the same run.

    .venv/bin/python bench/bench_ingest.py            # 200,000 orders, 1,000,000-row import
    .venv/bin/python bench/bench_ingest.py --quick    # small sizes, seconds

The ingest service runs as its own process (``python -m services.ingest serve``: uvicorn, a
SQLite event store, the outbox relay) against an embedded Tansu broker; the load comes from
another process (a minimal asyncio HTTP/1.1 client over keep-alive connections). "Into
Kafka" means acknowledged by the broker: the relay deletes an outbox row only after the
broker acknowledged it (the event store is the outbox: the relay moves a published-sequence
watermark), so the figure is taken when no stored order is left past the watermark.
``--split`` runs the relay in its own process (``consume``); ``--workers 2`` runs two API
processes (``uvicorn --factory --workers 2``) plus the relay process. The ``ceiling`` line
is GET /healthz through the same client: what the HTTP stack alone allows here. Every phase
also prints the CPU time the service processes spent per order (from /proc), which stays
meaningful when other jobs load the machine and wall-clock rates swing.
"""

from __future__ import annotations

import argparse
import csv
import io
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, record, use_sink  # noqa: E402
from devtools.broker import EmbeddedBroker, free_port  # noqa: E402
from shared.bus import make_producer  # noqa: E402
from shared.events import Order, OrderRecordedEvent, encode_event  # noqa: E402

KEY = "bench-admin-key"
HEADERS = {"X-API-Key": KEY, "content-type": "application/json"}


def make_order(i: int, run: str) -> dict[str, Any]:
    """The contract example, varied per order (about 650 bytes as an event)."""
    return {
        "order_id": f"{run}-{i}",
        "customer_id": f"tb_customer{i % 50000}",
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "paid_at": "2026-11-01T10:02:13+08:00",
        "updated_at": "2026-11-01T10:02:13+08:00",
        "currency": "CNY",
        "total_amount": f"{100 + i % 900}.00",
        "refunded_amount": "0.00",
        "channel": "tmall",
        "items": [
            {
                "sku": f"A-{i % 300}",
                "name": "羊毛围巾",
                "category": "accessories",
                "brand": "Acme",
                "unit_price": f"{50 + i % 450}.00",
                "quantity": 2,
            }
        ],
        "buyer": {"name": "张三", "mobile": f"+86 138 {i % 10000:04d} 8000", "email": None},
        "shipping": {
            "province": "浙江省",
            "city": "杭州市",
            "district": "西湖区",
            "address": "文三路 100 号",
        },
    }


# --------------------------------------------------------------------------- baseline


def baseline(bootstrap: str, count: int) -> float:
    """Raw kafka-python: the same canonical events, encoded up front, produced and flushed."""
    run = uuid.uuid4().hex[:6]
    values = [
        encode_event(OrderRecordedEvent(source="bench", key=o.customer_id, data=o))
        for o in (Order.model_validate(make_order(i, run)) for i in range(count))
    ]
    keys = [f"tb_customer{i % 50000}".encode() for i in range(count)]
    producer = make_producer(bootstrap)
    topic = f"bench-baseline-{run}"
    producer.send(topic, key=b"warm", value=b"{}").get(30)
    started = time.perf_counter()
    futures = [producer.send(topic, key=k, value=v) for k, v in zip(keys, values, strict=True)]
    producer.flush(120)
    for f in futures[-100:]:
        f.get(30)
    elapsed = time.perf_counter() - started
    producer.close()
    return count / elapsed


# --------------------------------------------------------------------------- the service


class Service:
    def __init__(
        self, bootstrap: str, data_dir: Path, split: bool = False, workers: int = 1
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CRM_DATA_DIR": str(data_dir),
            "CRM_API_KEY": KEY,
            "CRM_TOPIC_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}.",
            "INGEST_PORT": str(self.port),
            "INGEST_RUN_CONSUMER": "false",
            "INGEST_LOG_LEVEL": "WARNING",
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(data_dir / "ingest.log", "ab")  # noqa: SIM115
        self.db_path = data_dir / "ingest.db"
        self.relay: subprocess.Popen[bytes] | None = None
        if split or workers > 1:
            subprocess.run(
                [sys.executable, "-m", "services.ingest", "migrate"], cwd=ROOT, env=env, check=True
            )
            # the outbox relay in its own process (`consume`), the API without it
            self.relay = subprocess.Popen(
                [sys.executable, "-m", "services.ingest", "consume"],
                cwd=ROOT,
                env=env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            env = {**env, "INGEST_RUN_RELAY": "false"}
        command = [sys.executable, "-m", "services.ingest", "serve"]
        if workers > 1:
            # how an operator runs several API processes on one port: uvicorn's workers
            # (each builds the app from the environment; the relay runs in `consume`)
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "services.ingest.app:create_app",
                "--factory",
                "--workers",
                str(workers),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("ingest did not become ready")

    def pending(self) -> int:
        """Orders not yet acknowledged by the broker: current versions past the relay's
        published-sequence watermark (the event store is the outbox), plus any outbox rows."""
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            watermark = conn.execute(
                "SELECT value FROM kv_state WHERE name = 'published_sequence'"
            ).fetchone()
            after = int(watermark[0]) if watermark and watermark[0] else 0
            stored = conn.execute(
                "SELECT count(*) FROM stored_events WHERE current AND kind = 'order'"
                " AND sequence > ?",
                (after,),
            ).fetchone()[0]
            queued = conn.execute(
                "SELECT count(*) FROM outbox WHERE topic LIKE 'crm.orders%'"
            ).fetchone()[0]
            return int(stored) + int(queued)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        for process in (self.process, self.relay):
            if process is None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system, all threads) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of a process and its children (uvicorn's workers)."""
    if pid is None:
        return 0.0
    total = _cpu_of(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            total += _cpu_of(int(stat.parent.name))
    return total


def cpu_now(service: Service) -> tuple[float, float]:
    relay = service.relay.pid if service.relay is not None else None
    return tree_cpu(service.process.pid), tree_cpu(relay)


def cpu_line(before: tuple[float, float], after: tuple[float, float], count: int) -> str:
    api = (after[0] - before[0]) / count * 1e6
    relay = (after[1] - before[1]) / count * 1e6
    text = f"CPU per order: API process(es) {api:.0f} us"
    if relay:
        text += f", relay process {relay:.0f} us"
    return text + f" (one core = {1e6 / api:,.0f} orders/s of API work)"


def wait_published(service: Service, timeout: float = 600) -> float:
    """When every stored order is acknowledged by the broker (its outbox is empty)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.pending() == 0:
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"{service.pending()} orders still unpublished")


# --------------------------------------------------------------------------- load (another process)


def _post_bodies(base: str, path: str, bodies: list[bytes], threads: int, out: Any) -> None:
    """Runs in the load process: keep-alive connections with a minimal asyncio HTTP/1.1
    client (a full client such as httpx costs more CPU per request than the server)."""
    import asyncio

    host, port = base.removeprefix("http://").split(":")
    position = [0]
    errors: list[int] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while position[0] < len(bodies):
            body = bodies[position[0]]
            position[0] += 1
            if body:
                head = (
                    f"POST {path} HTTP/1.1\r\nhost: {host}\r\nx-api-key: {KEY}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
            else:
                writer.write(f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            status = int(status_line.split()[1])
            if status not in (200, 202):
                errors.append(status)
        writer.close()

    async def main() -> None:
        await asyncio.gather(*(connection() for _ in range(threads)))

    started = time.perf_counter()
    asyncio.run(main())
    out.put((started, time.perf_counter(), errors[:5], len(errors)))


def load(base: str, path: str, bodies: list[bytes], threads: int) -> tuple[float, float]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    process = ctx.Process(target=_post_bodies, args=(base, path, bodies, threads, out))
    process.start()
    started, finished, sample, failed = out.get()
    process.join()
    if failed:
        raise RuntimeError(f"{failed} requests failed, e.g. {sample}")
    return started, finished


# --------------------------------------------------------------------------- import


TAOBAO_HEADER = [
    "订单编号",
    "买家会员名",
    "买家实际支付金额",
    "订单状态",
    "订单创建时间",
    "订单付款时间",
    "收货人姓名",
    "收货地址",
    "联系手机",
    "宝贝标题",
    "宝贝总数量",
    "退款金额",
]


def write_csv(path: Path, rows: int, items_per_order: int = 1) -> None:
    """A Taobao-style GBK export, written in chunks; with ``items_per_order`` > 1 a line-item
    export (that many consecutive rows per order, the order's fields repeated, one item each,
    as the platforms write them)."""
    with open(path, "wb") as out:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(TAOBAO_HEADER)
        for i in range(rows):
            order = i // items_per_order
            writer.writerow(
                [
                    f"{4000000000000 + order}",
                    f"buyer{i % 50000}",
                    f"{(i % 500) + 9.9:.2f}",
                    "交易成功",
                    f"2026-{1 + i % 10:02d}-{1 + i % 28:02d} 10:{i % 60:02d}:00",
                    f"2026-{1 + i % 10:02d}-{1 + i % 28:02d} 10:{i % 60:02d}:30",
                    "张三",
                    "浙江省 杭州市 西湖区 文三路100号",
                    f"138{i % 10000:08d}",
                    "羊毛围巾" if items_per_order == 1 else f"宝贝{i % items_per_order}",
                    "1",
                    "0.00",
                ]
            )
            if i % 10000 == 9999:
                out.write(buffer.getvalue().encode("gbk"))
                buffer.seek(0)
                buffer.truncate()
        out.write(buffer.getvalue().encode("gbk"))


def run_import(service: Service, path: Path) -> dict[str, Any]:
    before = service.rss_mb()
    started = time.perf_counter()
    with open(path, "rb") as file:
        response = httpx.post(
            f"{service.base}/v1/imports/orders",
            files={"file": ("export.csv", file, "text/csv")},
            headers={"X-API-Key": KEY},
            timeout=600,
        )
    response.raise_for_status()
    job_id = response.json()["job_id"]
    peak_seen = 0.0
    while True:
        job = httpx.get(
            f"{service.base}/v1/imports/{job_id}", headers={"X-API-Key": KEY}, timeout=30
        ).json()
        peak_seen = max(peak_seen, service.rss_mb())
        if job["status"] in ("completed", "failed"):
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    return {
        "job": job,
        "seconds": elapsed,
        "rss_before_mb": before,
        "peak_rss_mb": service.peak_rss_mb(),
        "size_mb": path.stat().st_size / 1e6,
    }


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--single", type=int, default=20_000)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--split", action="store_true", help="run the outbox relay in a separate `consume` process"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API worker processes (uvicorn --workers; implies --split)",
    )
    parser.add_argument("--threads", type=int, default=4, help="connections of the load process")
    parser.add_argument(
        "--single-connections", type=int, default=16, help="connections for one-order requests"
    )
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    parser.add_argument(
        "--line-items",
        type=int,
        default=0,
        help="also import a line-item export of the same rows (this many rows per order) on a "
        "fresh service and compare rows/s and peak memory with the single-row import",
    )
    parser.add_argument(
        "--imports-only", action="store_true", help="skip the REST phases (imports only)"
    )
    args = parser.parse_args()
    use_sink(args.figures)
    if args.quick:  # small sizes, unless given explicitly
        given = set(sys.argv)
        if "--orders" not in given:
            args.orders = 10_000
        if "--single" not in given:
            args.single = 1_000
        if "--import-rows" not in given:
            args.import_rows = 10_000
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        data = Path(tmp)
        mode = "one process"
        if args.split or args.workers > 1:
            mode = f"{args.workers} API process(es) + a separate relay process"
        print(
            f"mode: {mode}  "
            f"cpus: {os.cpu_count()}  orders: {args.orders}  batch: {args.batch}  "
            f"single: {args.single}  import rows: {args.import_rows}",
            flush=True,
        )
        if args.imports_only:
            return compare_imports(broker.bootstrap_servers, data, args)
        base_rate = baseline(broker.bootstrap_servers, args.orders)
        print(
            f"baseline  raw kafka-python, same events, nothing stored: {base_rate:,.0f} orders/s",
            flush=True,
        )

        service = Service(
            broker.bootstrap_servers, data / "a", split=args.split, workers=args.workers
        )
        try:
            orders = [make_order(i, run) for i in range(args.orders)]
            bodies = [
                orjson.dumps({"orders": orders[i : i + args.batch]})
                for i in range(0, len(orders), args.batch)
            ]
            cpu_before = cpu_now(service)
            started, answered = load(service.base, "/v1/orders/batch", bodies, args.threads)
            into_kafka = wait_published(service)
            cpu_batch = cpu_line(cpu_before, cpu_now(service), args.orders)
            print(
                f"batch     POST /v1/orders/batch ({args.batch}/request): "
                f"{args.orders / (answered - started):,.0f} orders/s stored (2xx); "
                f"{args.orders / (into_kafka - started):,.0f} orders/s into Kafka "
                f"({100 * args.orders / (into_kafka - started) / base_rate:.0f}% of baseline)",
                flush=True,
            )
            print(f"          {cpu_batch}", flush=True)
            record(
                Figure(
                    "ingest",
                    f"POST /v1/orders/batch ({args.batch}/request) orders/s into Kafka ({mode})",
                    round(args.orders / (into_kafka - started)),
                    "orders/s",
                    "raw kafka-python producer, same events",
                    round(base_rate),
                    ">= 15000",
                    size=args.orders,
                    extra={"stored_per_s": round(args.orders / (answered - started))},
                    note=cpu_batch,
                )
            )

            singles = [orjson.dumps(make_order(i, run + "s")) for i in range(args.single)]
            cpu_before = cpu_now(service)
            started, answered = load(service.base, "/v1/orders", singles, args.single_connections)
            into_kafka = wait_published(service)
            cpu_single = cpu_line(cpu_before, cpu_now(service), args.single)
            print(
                f"single    POST /v1/orders (1/request, {args.single_connections} connections): "
                f"{args.single / (answered - started):,.0f} requests/s stored (2xx); "
                f"{args.single / (into_kafka - started):,.0f} orders/s into Kafka",
                flush=True,
            )
            print(f"          {cpu_single}", flush=True)
            single_rate = args.single / (into_kafka - started)
            probes = [b""] * args.single
            cpu_before = cpu_now(service)
            started, answered = load(service.base, "/healthz", probes, args.threads * 4)
            cpu_probe = cpu_line(cpu_before, cpu_now(service), args.single)
            print(
                f"ceiling   GET /healthz (no work, same load process and connections): "
                f"{args.single / (answered - started):,.0f} requests/s; "
                f"{cpu_probe.replace('order', 'request')}",
                flush=True,
            )
            record(
                Figure(
                    "ingest",
                    f"POST /v1/orders (1/request) orders/s into Kafka ({mode})",
                    round(single_rate),
                    "orders/s",
                    "GET /healthz requests/s, same client",
                    round(args.single / (answered - started)),
                    ">= 3000",
                    size=args.single,
                    note=cpu_single,
                )
            )
            print(f"memory    service after the load: {service.rss_mb():.0f} MB RSS", flush=True)
        finally:
            service.stop()

        if args.line_items:
            return compare_imports(broker.bootstrap_servers, data, args)
        if not args.import_rows:
            return 0
        csv_path = data / "export.csv"
        write_csv(csv_path, args.import_rows)
        service = Service(broker.bootstrap_servers, data / "b")
        try:
            result = run_import(service, csv_path)
        finally:
            service.stop()
        job = result["job"]
        print(
            f"import    {args.import_rows:,} rows ({result['size_mb']:.0f} MB GBK): "
            f"{job['status']} in {result['seconds']:.1f}s "
            f"({args.import_rows / result['seconds']:,.0f} rows/s); accepted {job['accepted']:,}"
            f", rejected {job['rejected']:,}; service RSS {result['rss_before_mb']:.0f} MB "
            f"before, peak {result['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    return 0


def compare_imports(bootstrap: str, data: Path, args: Any) -> int:
    """The single-row import (the baseline) and a line-item export of as many rows, each on
    a fresh service, in this run: rows/s and peak RSS side by side."""
    results = {}
    for label, per_order in (("single-row", 1), ("line-item", max(args.line_items, 2))):
        csv_path = data / f"export-{label}.csv"
        write_csv(csv_path, args.import_rows, per_order)
        service = Service(bootstrap, data / label)
        try:
            result = run_import(service, csv_path)
        finally:
            service.stop()
        csv_path.unlink()
        job = result["job"]
        rate = args.import_rows / result["seconds"]
        results[label] = (rate, result["peak_rss_mb"])
        print(
            f"import    {label:10} {args.import_rows:,} rows ({per_order} per order, "
            f"{result['size_mb']:.0f} MB GBK): {job['status']} in {result['seconds']:.1f}s "
            f"({rate:,.0f} rows/s); orders accepted {job['accepted']:,}, rejected "
            f"{job['rejected']:,}; RSS {result['rss_before_mb']:.0f} MB before, peak "
            f"{result['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    (base_rate, base_peak), (rate, peak) = results["single-row"], results["line-item"]
    print(
        f"line-item vs single-row: {rate / base_rate:.0%} of the rows/s, "
        f"{peak / base_peak:.0%} of the peak RSS (target: within 20 %)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
