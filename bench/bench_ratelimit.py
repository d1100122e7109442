"""Cost of the per-key rate limit (the ``limits`` library) per request, on ingest's hot path.

    .venv/bin/python bench/bench_ratelimit.py            # 50,000 requests per variant
    .venv/bin/python bench/bench_ratelimit.py --quick    # 2,000

Calls an app built by ``shared.api.build_app`` straight through ASGI (no sockets: the HTTP
stack would hide the difference) on a fast-lane POST route, as ingest's POST /v1/orders is
served, and on an ordinary GET route (FastAPI routing and dependencies). The same run
measures each route with the limiter off (a key without a limit: ``hit_key`` returns at
once) as the baseline, then with a per-key limit counted on every request, and prints
microseconds per request, the difference, and the load of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi import APIRouter, Request  # noqa: E402
from starlette.responses import Response  # noqa: E402

from bench.figures import Figure, record, use_sink  # noqa: E402
from shared.api import build_app, require  # noqa: E402
from shared.config import ServiceSettings  # noqa: E402
from shared.db import make_metadata  # noqa: E402
from shared.runtime import ServiceRuntime  # noqa: E402

UNLIMITED_KEY = "bench-unlimited"
LIMITED_KEY = "bench-limited"


class BenchSettings(ServiceSettings):
    service_name: ClassVar[str] = "bench"


def make_app(data_dir: Path) -> Any:
    settings = BenchSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=data_dir,
        api_keys={UNLIMITED_KEY: ["bench:write", "bench:free"], LIMITED_KEY: ["bench:write"]},
        # a limit far above what the run sends: every request is counted, none refused
        rate_limits={"bench:free": "unlimited", "bench:write": "1000000000/minute"},
    )
    runtime = ServiceRuntime(settings, data_dir / "no-migrations")
    make_metadata().create_all(runtime.db.engine)
    router = APIRouter(prefix="/v1")

    @router.post("/orders", status_code=202, dependencies=[require("bench:write")])
    async def accept(request: Request) -> Response:
        """Accept (fast lane)."""
        return Response(b"{}", status_code=202, media_type="application/json")

    @router.get("/things", dependencies=[require("bench:write")])
    async def things() -> list[str]:
        """List (ordinary routing)."""
        return []

    return build_app(
        runtime=runtime,
        title="bench",
        description="bench",
        routers=[router],
        start_runtime=False,
        fast_routes=[("POST", "/v1/orders")],
    )


async def drive(app: Any, method: str, path: str, key: str, n: int) -> float:
    """Seconds for ``n`` requests through the ASGI app, one after the other."""
    headers = [(b"x-api-key", key.encode()), (b"content-type", b"application/json")]
    body = b'{"order_id": "o1"}'
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope_base = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8001),
        "app": app,
    }
    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope_base), receive, send)
    elapsed = time.perf_counter() - started
    assert set(statuses) <= {200, 202}, set(statuses)
    return elapsed


def _time_hits(limiter: Any, limit: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        limiter.hit_key("bench", limit)
    return (time.perf_counter() - started) / n * 1e6


def stock_storage(app: Any) -> None:
    """Give the app's limiter limits' own MemoryStorage (its expiry timer thread)."""
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    limiter = app.state.rate_limiter
    limiter.storage = MemoryStorage()
    limiter.strategy = FixedWindowRateLimiter(limiter.storage)
    limiter.auth_strategy = MovingWindowRateLimiter(limiter.storage)


async def main_async(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(Path(tmp) / "a")
        stock = make_app(Path(tmp) / "b")
        stock_storage(stock)
        async with app.router.lifespan_context(app), stock.router.lifespan_context(stock):
            for label, method, path in (
                ("fast lane POST /v1/orders", "POST", "/v1/orders"),
                ("routed GET /v1/things", "GET", "/v1/things"),
            ):
                variants = {
                    "baseline (no limit)": (app, UNLIMITED_KEY),
                    "per-key limit": (app, LIMITED_KEY),
                    "per-key limit, limits' MemoryStorage": (stock, LIMITED_KEY),
                }
                for target, key in variants.values():
                    await drive(target, method, path, key, 500)  # warm up
                rounds: dict[str, list[float]] = {name: [] for name in variants}
                for _ in range(5):  # interleaved, best of five: the machine is shared
                    for name, (target, key) in variants.items():
                        rounds[name].append(await drive(target, method, path, key, n))
                base = min(rounds["baseline (no limit)"]) / n * 1e6
                print(f"{label}:")
                print(f"  {'baseline (no limit)':38} {base:7.1f} us/request")
                for name in list(variants)[1:]:
                    value = min(rounds[name]) / n * 1e6
                    print(
                        f"  {name:38} {value:7.1f} us/request  "
                        f"(+{value - base:.1f} us, x{value / base:.2f})"
                    )
                limited = min(rounds["per-key limit"]) / n * 1e6
                record(
                    Figure(
                        "ratelimit",
                        f"{label} with a per-key limit, in-process (us/request)",
                        round(limited, 1),
                        "us",
                        "same route, no limit",
                        round(base, 1),
                        size=n,
                    )
                )
        limiter = app.state.rate_limiter
        limit = limiter.limit_for({"bench:write"})
        for _ in range(1000):
            limiter.hit_key("warm", limit)
        best = min(_time_hits(limiter, limit, n) for _ in range(5))
        print(f"the limiter's check alone (RateLimiter.hit_key): {best:.1f} us/request")
    with open("/proc/loadavg") as load:
        print(f"load: {load.read().strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 requests per variant")
    parser.add_argument("--requests", type=int, help="requests per variant (default 50,000)")
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    args = parser.parse_args()
    use_sink(args.figures)
    asyncio.run(main_async(args.requests or (2_000 if args.quick else 50_000)))


if __name__ == "__main__":
    main()
