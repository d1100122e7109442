"""Per-request cost of the access log (shared.access_log) on ingest's hot path, POST
/v1/orders, against the same requests with CRM_ACCESS_LOG=false in the same run.

    .venv/bin/python bench/bench_access_log.py [--requests 400]

Two ingest apps in one process (SQLite, no broker: the relay's retries run beside it on
both), called in-process through the ASGI interface with the same orders, alternating
rounds of 50 so that machine load hits both alike. The access lines are formatted by the
production JsonFormatter and written to /dev/null (the cost of a line includes its JSON).
Prints microseconds per request for each, the difference and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from services.ingest.app import create_app
from services.ingest.config import Settings
from shared import access_log
from shared.logs import JsonFormatter, log_context

KEY = "bench-admin-key"


def order(n: int, tag: str) -> dict[str, Any]:
    return {
        "order_id": f"{tag}-{n}",
        "customer_id": f"c{n % 500}",
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "currency": "CNY",
        "total_amount": "99.00",
    }


async def rounds(apps: dict[str, Any], requests: int) -> dict[str, float]:
    spent = dict.fromkeys(apps, 0.0)
    clients = {
        name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")
        for name, app in apps.items()
    }
    headers = {"X-API-Key": KEY}
    for name, client in clients.items():  # warm up: first request, imports, caches
        await client.post("/v1/orders", json=order(-1, name), headers=headers)
    for start in range(0, requests, 50):
        for name, client in clients.items():
            began = time.perf_counter()
            for n in range(start, min(start + 50, requests)):
                response = await client.post("/v1/orders", json=order(n, name), headers=headers)
                assert response.status_code == 202, response.text
            spent[name] += time.perf_counter() - began
    for client in clients.values():
        await client.aclose()
    return {name: seconds / requests * 1e6 for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    devnull = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (process-long)
    devnull.setFormatter(JsonFormatter("ingest"))
    logging.getLogger().addHandler(devnull)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # no broker, on purpose
    with tempfile.TemporaryDirectory() as tmp:
        apps = {}
        for name, enabled in (("off", False), ("on", True)):
            settings = Settings(
                kafka_bootstrap_servers="127.0.0.1:1",
                data_dir=Path(tmp) / name,
                database_url=f"sqlite:///{Path(tmp) / name}.db",
                api_key=KEY,
                run_consumer=False,
                access_log=enabled,
            )
            apps[name] = create_app(settings)

        async def run() -> dict[str, float]:
            off, on = apps["off"], apps["on"]
            async with off.router.lifespan_context(off), on.router.lifespan_context(on):
                return await rounds(apps, args.requests)

        per = asyncio.run(run())
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    print(f"load {' '.join(load)}; {args.requests} POST /v1/orders each, in-process ASGI")
    print(f"access log off (baseline): {per['off']:8.0f} us/request")
    print(f"access log on:             {per['on']:8.0f} us/request")
    print(
        f"difference: {per['on'] - per['off']:+.0f} us/request, ratio {per['on'] / per['off']:.3f}"
    )
    calls = 20_000
    with log_context(request_id="0123456789abcdef0123456789abcdef"):
        began = time.perf_counter()
        for _ in range(calls):
            access_log.log_request("POST", "/v1/orders", 202, 0.0031)
        line = (time.perf_counter() - began) / calls * 1e6
    print(f"one access line alone (formatted, written): {line:.1f} us")


if __name__ == "__main__":
    main()
