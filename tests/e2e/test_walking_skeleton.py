"""End to end through the real processes and the real broker.

`python -m devtools.devrun` (what `make run` executes) starts the four services as
separate processes against the session's broker; an order posted to ingest must
travel crm.orders.v1 -> segment -> crm.segments.v1 -> profile and campaign.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from devtools.broker import free_port
from devtools.testing import unique, wait_for
from shared import manifest
from tests.conftest import ADMIN_KEY
from tests.e2e.system import ROOT, RunningSystem, consumer_ports, ready

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _ready(system: RunningSystem) -> bool:
    return ready(system)


def test_an_order_flows_through_every_service(system: RunningSystem) -> None:
    wait_for(lambda: _ready(system), timeout=45, what="all four /readyz to answer 200")
    headers = {"X-API-Key": ADMIN_KEY}
    customer = unique("cust")
    order = {
        "order_id": unique("T"),
        "customer_id": customer,
        "status": "paid",
        "created_at": "2026-11-01T10:00:00+08:00",
        "paid_at": "2026-11-01T10:02:13+08:00",
        "updated_at": "2026-11-01T10:02:13+08:00",
        "currency": "CNY",
        "total_amount": "199.00",
        "channel": "tmall",
        "buyer": {"name": "张三", "mobile": "+86 138 0013 8000"},
        "shipping": {"province": "浙江省", "city": "杭州市"},
    }
    started = time.monotonic()
    response = httpx.post(system.url("ingest", "/v1/orders"), json=order, headers=headers)
    assert response.status_code == 202, response.text

    def scores() -> dict | None:
        r = httpx.get(system.url("segment", f"/v1/customers/{customer}/scores"), headers=headers)
        return r.json() if r.status_code == 200 else None

    segment_view = wait_for(scores, timeout=20, what="segment scores for the customer")
    assert segment_view["frequency"] == 1
    assert segment_view["monetary"] == "199.00"
    assert segment_view["recency_days"] is not None
    assert segment_view["rfm_segment"]
    # the target in issue 2 is 5 s on an idle machine; here the suite shares two cores
    print(f"order visible in segment after {time.monotonic() - started:.2f}s")

    def profile() -> dict | None:
        r = httpx.get(system.url("profile", f"/v1/customers/{customer}"), headers=headers)
        if r.status_code != 200:
            return None
        body = r.json()
        return body if (body.get("scores") or {}).get("rfm_segment") else None

    profile_view = wait_for(profile, timeout=20, what="profile with order count and segment")
    assert profile_view["transactions"]["order_count"] == 1
    assert profile_view["scores"]["rfm_segment"] == segment_view["rfm_segment"]
    assert profile_view["scores"]["lifecycle_stage"] == segment_view["lifecycle_stage"]

    def audience() -> dict | None:
        r = httpx.get(system.url("campaign", f"/v1/audience/{customer}"), headers=headers)
        return r.json() if r.status_code == 200 and r.json().get("rfm_segment") else None

    campaign_view = wait_for(audience, timeout=20, what="campaign projection of the customer")
    assert campaign_view["rfm_segment"] == segment_view["rfm_segment"]
    assert campaign_view["lifecycle_stage"] == segment_view["lifecycle_stage"]


def test_sigterm_leaves_no_process_behind(system: RunningSystem) -> None:
    wait_for(lambda: _ready(system), timeout=45, what="all four /readyz to answer 200")
    children = _children(system.process.pid)
    assert len(children) >= 4
    system.process.send_signal(signal.SIGTERM)
    assert system.process.wait(30) == 0
    assert not [pid for pid in children if _alive(pid)]


def test_a_killed_service_is_restarted(system: RunningSystem) -> None:
    wait_for(lambda: _ready(system), timeout=45, what="all four /readyz to answer 200")
    before = set(_children(system.process.pid))
    victim = next(
        pid
        for pid in before
        if "services.segment" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    )
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: _ready(system), timeout=45, what="segment to come back")
    after = set(_children(system.process.pid))
    assert victim not in after
    assert "restarting segment" in system.log.read_text()


def test_make_run_with_embedded_broker_and_sigterm(tmp_path: Path) -> None:
    """`make run` itself: its own broker, four /readyz within 30 s, SIGTERM to make cleans up."""
    ports = {name: free_port() for name in manifest.NAMES}
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(
        {
            "CRM_BROKER_PORT": str(free_port()),
            "CRM_DATA_DIR": str(tmp_path / "var"),
            "CRM_RUN_QUIET": "1",
            **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
    )
    env.pop("CRM_API_KEY", None)
    env.pop("CRM_RUN_LAYOUT", None)
    settings, internal_ports = consumer_ports(ports, env)
    env.update(settings)
    out = open(tmp_path / "make.log", "wb")  # noqa: SIM115 - closed below
    make = subprocess.Popen(
        ["make", "-s", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    system = RunningSystem(make, ports, tmp_path / "make.log", internal_ports=internal_ports)
    try:
        started = time.monotonic()
        wait_for(lambda: _ready(system), timeout=60, what="make run to be ready")
        print(f"make run ready in {time.monotonic() - started:.1f}s")
        key_file = tmp_path / "var" / "api_key"
        assert key_file.exists() and len(key_file.read_text().strip()) >= 32
        wait_for(
            lambda: str(key_file) in (tmp_path / "make.log").read_text(),
            timeout=10,
            what="make run to print where the API key is",
        )
        everything = _descendants(make.pid)
        # supervisor, broker, four services, three of them consuming in a second process
        assert len(everything) >= 9, everything
        for service, port in internal_ports.items():
            # the consume process's own metrics: its consumers' lag (once they fetched)
            url = f"http://127.0.0.1:{port}/metrics"
            wait_for(
                lambda url=url: "crm_consumer_lag{" in httpx.get(url, timeout=5).text,
                timeout=60,
                what=f"{service}'s consumer lag on its internal port",
            )
        make.send_signal(signal.SIGTERM)
        make.wait(40)
        wait_for(
            lambda: not [p for p in everything if _alive(p)],
            timeout=20,
            what="every process started by make run to exit",
        )
    finally:
        if make.poll() is None:
            make.kill()
        out.close()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in _children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found
