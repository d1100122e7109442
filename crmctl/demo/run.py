"""``make demo``: with the system up (``make run``), or starting it, generate a shop of
10,000 customers, stream it in through the raw topics, REST and a CSV import, print the
reports as tables, write them as PNG charts, and run one campaign with a holdout.

The conversions after the campaign are simulated (new orders from a share of each arm);
everything else is what the services computed from the streamed data."""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock, Thread
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crmctl import reports
from crmctl.client import Api, CrmError
from crmctl.config import SERVICES, Target, resolve
from crmctl.demo import feed
from crmctl.demo.shop import generate
from crmctl.groups import render_campaign_report
from crmctl.output import console

ROOT = Path(__file__).resolve().parents[2]
WINBACK_PROVINCES = ["浙江省", "江苏省", "上海市"]


def _ready(target: Target) -> bool:
    for service in SERVICES:
        try:
            if httpx.get(target.url(service, "/readyz"), timeout=2).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
    return True


def _wait(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise CrmError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_system(data_dir: Path) -> subprocess.Popen[bytes]:
    """``python -m devtools.devrun`` (what ``make run`` runs), its output in the data folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "demo-devrun.log").open("wb")
    console.print(f"[bold]starting the system[/bold] (python -m devtools.devrun; log {log.name})")
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.devrun"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "CRM_RUN_QUIET": "1"}, start_new_session=True,
    )  # fmt: skip


def stream(target: Target, shop: Any) -> dict[str, Any]:
    split = feed.plan(shop)
    kafka_total = len(shop.customers) + len(split.kafka) + len(shop.interactions)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    lock = Lock()
    columns = (
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress, Api(target) as api:
        tasks = {
            "kafka": progress.add_task("raw topics (kafka-python)", total=kafka_total),
            "rest": progress.add_task("REST POST /v1/orders/batch", total=len(split.rest)),
            "csv": progress.add_task("CSV import /v1/imports/orders", total=len(split.csv)),
        }

        def advance(kind: str, n: int) -> None:
            with lock:
                progress.advance(tasks[kind], n)

        def run(name: str, fn: Any, *args: Any) -> None:
            try:
                results[name] = fn(*args)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            Thread(target=run, args=("kafka", feed.produce_raw, target.bootstrap_servers, target.namespace, shop, split.kafka, advance)),
            Thread(target=run, args=("rest", feed.post_batches, api, split.rest, advance)),
            Thread(target=run, args=("csv", feed.import_csv, api, split.csv, advance)),
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return results


def wait_scored(api: Api, customers: int, timeout: float, settle: float = 20.0) -> int:
    """Wait until segment has scored ``customers``, or its count has not moved for
    ``settle`` seconds (a customer whose every order was rejected is never scored)."""
    columns = (
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    seen = {"n": -1, "since": time.monotonic()}
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("scored by segment", total=customers)

        def scored() -> bool:
            body = api.get("segment", "/v1/reports/lifecycle")
            n = sum(int(r["customers"]) for r in body["rows"])
            progress.update(task, completed=n)
            if n != seen["n"]:
                seen.update(n=n, since=time.monotonic())
            return n >= customers or (n > 0 and time.monotonic() - seen["since"] > settle)

        _wait("segment to score every customer", scored, timeout, interval=1.0)
    if seen["n"] < customers:
        console.print(
            f"[yellow]{customers - seen['n']} customers not scored (all their orders rejected?)[/yellow]"
        )
    return int(seen["n"])


def refuse_a_second_run(api: Api, data_dir: Path) -> None:
    """The shop has fixed ids (demo-00001, D<day><seq>) and dates relative to now: sent to a
    system that holds a previous run's shop, its orders would collide with the first run's
    (same ids, other dates: new versions or conflicts) and its customers' profiles would
    mix. So the demo runs on a system without a demo shop, and says how to reset."""
    # profile and segment each follow the orders topic at their own pace: a run that just
    # ended has waited for segment's scores, while profile may still be catching up
    known = any(
        _knows(api, service, path)
        for service, path in (
            ("segment", "/v1/customers/demo-00001/scores"),
            ("profile", "/v1/customers/demo-00001"),
        )
    )
    if not known:
        return
    raise CrmError(
        "this system already holds a demo shop (customer demo-00001): a second run would "
        "collide with the first one's customers and orders. To run it again, start from "
        f"an empty system: stop it, remove {data_dir} (the SQLite databases; `make clean` "
        "removes var/ and the venv), then `make demo`"
    )


def _knows(api: Api, service: str, path: str) -> bool:
    """Whether ``service`` has the resource: 200 yes, 404 no; a 429 or 503 (a busy SQLite,
    a rate limit) is no answer yet, so it asks again for up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        status = api.request("GET", service, path).status_code
        if status in (200, 404):
            return status == 200
        if time.monotonic() > deadline:
            raise CrmError(
                f"could not tell whether this system holds a demo shop: {service} answered {status}"
            )
        time.sleep(1.0)


#: F breakpoints the demo sets (merchant-set, docs/segment.md): most buyers of a shop buy
#: once, so frequency quintiles tie at 1 and F2/F3 stay empty; with these, F1 = 1 order,
#: F2 = 2, F3 = 3, F4 = 4-5, F5 = 6 or more
DEMO_F_BREAKPOINTS = ["1", "2", "3", "5"]


def set_demo_policy(api: Api) -> None:
    """Fixed F breakpoints through ``PUT /v1/scoring-policy`` (which rescores everyone);
    on a system where they are already in force, a recompute instead."""
    policy = api.get("segment", "/v1/scoring-policy")["policy"]
    policy["frequency"] = {"method": "fixed", "breakpoints": DEMO_F_BREAKPOINTS}
    written = api.call("PUT", "segment", "/v1/scoring-policy", json=policy)
    console.print(
        "scoring policy: fixed F breakpoints "
        f"{', '.join(DEMO_F_BREAKPOINTS)} (F1 = one order ... F5 = 6+; quintiles tie at 1 "
        f"when most customers buy once), version {written['version']}"
    )
    if not written.get("created"):
        api.post("segment", "/v1/scoring/recompute")


def show_reports(api: Api, out: Path) -> list[Path]:
    written = []
    for name in reports.REPORTS:
        data = api.get("segment", f"/v1/reports/{name}")
        for table in reports.tables(data):
            console.print(table)
        written.append(reports.write_png(data, out / f"{name}.png"))
    return written


def _held_out(campaign_id: str, customer_id: str, share: float) -> bool:
    """The campaign service's holdout draw (docs/campaign.md), to simulate both arms."""
    digest = hashlib.blake2b(f"{campaign_id}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def run_campaign(api: Api, run: str) -> dict[str, Any]:
    segment_id = f"demo-winback-{run}"
    rule = {"all": [
        {"field": "lifecycle_stage", "op": "in", "value": ["silent", "sleeping"]},
        {"field": "province", "op": "in", "value": WINBACK_PROVINCES},
    ]}  # fmt: skip
    api.post(
        "segment",
        "/v1/segments",
        json={"segment_id": segment_id, "name": "沪苏浙 win-back", "rule": rule},
    )
    members = api.pages("segment", f"/v1/segments/{segment_id}/members")
    members = [m if isinstance(m, str) else m["customer_id"] for m in members]
    console.print(
        f"segment {segment_id}: {len(members)} silent or sleeping customers in 沪苏浙; giving them consent (sms, wechat)"
    )
    now = datetime.now(UTC).isoformat()
    feed.set_consents(api, members, ("wechat", "sms"), now)

    def projected() -> bool:
        for customer_id in (members[0], members[-1]):
            try:
                audience = api.get("campaign", f"/v1/audience/{customer_id}")
            except CrmError:
                return False
            if segment_id not in (audience.get("segments") or []) or not audience.get(
                "contact_policy"
            ):
                return False
        return True

    _wait("campaign's projection to see the segment and the consents", projected, 60)
    holdout_share = 0.2
    campaign = api.post("campaign", "/v1/campaigns", json={
        "name": "沪苏浙 老客召回", "purpose": "reactivation", "audience": {"segment_id": segment_id},
        "channels": ["wechat", "sms"],
        "content": {"template": "{{ city | 亲爱的顾客 }}的老朋友，回来看看：券码 {{ coupon }}", "variables": {"coupon": "BACK20"}},
        "schedule": {"type": "now"}, "holdout_share": holdout_share, "conversion_window_days": 14,
    })  # fmt: skip
    campaign_id = campaign["campaign_id"]
    launched = api.post("campaign", f"/v1/campaigns/{campaign_id}/launch")
    console.print(
        f"campaign {campaign_id} launched: {launched['sent']} messages, {launched['holdout']} held out"
    )
    # simulated response: 18 % of the treatment and 8 % of the holdout buy again
    buyers = []
    for customer_id in members:
        share = 0.08 if _held_out(campaign_id, customer_id, holdout_share) else 0.18
        if (
            int(hashlib.blake2b(f"buy:{customer_id}".encode(), digest_size=2).hexdigest(), 16)
            / 65536
            < share
        ):
            buyers.append(customer_id)
    stamp = datetime.now(UTC)
    orders = [
        {"order_id": f"W{run}-{i:05d}", "customer_id": c, "status": "paid", "currency": "CNY",
         "created_at": stamp.isoformat(), "paid_at": stamp.isoformat(), "updated_at": stamp.isoformat(),
         "total_amount": "268.00", "channel": "wechat_mini", "promotion": "BACK20"}
        for i, c in enumerate(buyers)
    ]  # fmt: skip
    if orders:
        api.post("ingest", "/v1/orders/batch", json={"orders": orders})

    def converted() -> dict[str, Any] | None:
        report = api.get("campaign", f"/v1/campaigns/{campaign_id}/report")
        seen = int(report["treatment"].get("converted", 0)) + int(
            report["control"].get("converted", 0)
        )
        return report if seen >= len(orders) else None

    try:
        return _wait("the conversions to reach campaign", converted, 60)
    except CrmError:
        return api.get("campaign", f"/v1/campaigns/{campaign_id}/report")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--out", type=Path, help="where the charts go (default $CRM_DATA_DIR/demo)")
    parser.add_argument(
        "--keep-running", action="store_true", help="leave a system this started running"
    )
    args = parser.parse_args(argv)
    started_at = time.monotonic()
    target = resolve(urls={}, api_key=None, bootstrap_servers=None, namespace=None, timeout=120)
    data_dir = Path(os.environ.get("CRM_DATA_DIR", "var"))
    out = args.out or data_dir / "demo"
    process = None
    try:
        if not _ready(target):
            process = start_system(data_dir)
            _wait("the four services to be ready", lambda: _ready(target), 120)
            target = resolve(
                urls={}, api_key=None, bootstrap_servers=None, namespace=None, timeout=120
            )
        if not target.api_key:
            raise CrmError(
                "no API key: set CRM_API_KEY or run `make run` first (it writes var/api_key)"
            )
        with Api(target) as api:
            refuse_a_second_run(api, data_dir)
        run = datetime.now(UTC).strftime("%H%M%S")
        shop = generate(args.customers, seed=args.seed)
        console.print(
            f"[bold]shop[/bold]: {len(shop.customers)} customers, {len(shop.orders)} orders, {len(shop.interactions)} reviews / complaints / returns over two years"
        )
        results = stream(target, shop)
        csv_job = results["csv"]
        console.print(
            f"REST batch: {results['rest']}; CSV import: {csv_job['accepted']} accepted, {csv_job['duplicate']} duplicate, {csv_job['rejected']} rejected"
        )
        with Api(target) as api:
            buyers = len({o["customer_id"] for o in shop.orders})
            wait_scored(api, buyers, timeout=240)
            set_demo_policy(api)
            charts = show_reports(api, out)
            report = run_campaign(api, run)
            render_campaign_report(report)
        console.print("charts: " + ", ".join(str(p) for p in charts))
        console.print(
            f"[bold green]demo done in {time.monotonic() - started_at:.0f} s[/bold green]; explore with `crm --help`"
        )
        return 0
    except CrmError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    finally:
        if process is not None:
            if args.keep_running:
                console.print(
                    f"the system keeps running (pid {process.pid}); stop it with kill {process.pid}"
                )
            else:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(60)
