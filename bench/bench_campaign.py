"""Launch time and peak memory of a campaign over a large audience (SQLite).

usage: python bench/bench_campaign.py [--quick] [--customers N] [--chunk N] [--keep DIR]
                                      [--figures PATH]

1. fills the campaign database's audience projection with N customers (every one in
   the target segment; 80% consented to sms, 5% do-not-disturb, 5% erased, 10% with no
   policy, 10% inside quiet hours right now, half with a 4-per-30-days cap); the 5%
   erased have no audience row, only a tombstone (``erased_customers``), as
   ``profile.erased`` leaves them;
2. baseline, in a fresh process: a scan of the whole projection in the launch's keyset
   pages (what any launch must at least read);
3. the launch, in a fresh process: audience snapshot, decisions, entries and outbox rows
   (10% holdout); then a relaunch of the finished campaign (idempotent: writes nothing);
4. the campaign report over all those entries (no orders yet).

Each measured step runs in its own process so its peak RSS (ru_maxrss) is its own.
The outbox relay is not running: publishing to Kafka is the relay's job after commit.
Target (issue 6): a 1,000,000-customer launch under 60 s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.figures import Figure, peak_rss_mib, record, use_sink  # noqa: E402


def populate(db_path: Path, n: int) -> float:
    from shared.erasure import tombstone_key

    started = time.perf_counter()
    conn = sqlite3.connect(db_path)
    now = "2026-11-23 04:00:00.000000"
    consent = json.dumps({"customer_id": "x", "channels": {"sms": {"consented": True}}})

    def rows():  # type: ignore[no-untyped-def]
        for i in range(n):
            customer_id = f"cust{i:08d}"
            bucket = i % 20
            if bucket == 19:  # erased: only its tombstone is left (see tombstones())
                continue
            if bucket < 2:
                policy = None
            elif bucket == 2:
                policy = json.dumps(
                    {"channels": {"sms": {"consented": True}}, "do_not_disturb": True}
                )
            elif bucket in (3, 4):
                # quiet all day: every such customer is deferred, not dropped
                policy = json.dumps(
                    {
                        "channels": {"sms": {"consented": True}, "email": {"consented": True}},
                        "quiet_hours": {
                            "start": "00:00",
                            "end": "23:59",
                            "timezone": "Asia/Shanghai",
                        },
                    }
                )
            elif i % 2:
                policy = json.dumps(
                    {"channels": {"sms": {"consented": True}}, "max_contacts": 4, "period_days": 30}
                )
            else:
                policy = consent
            yield (
                customer_id,
                now,
                "champions" if i % 3 else "at_risk",
                "active" if i % 4 else "silent",
                1 + i % 5,
                1 + (i // 5) % 5,
                1 + (i // 25) % 5,
                "premium",
                i % 90,
                1 + i % 7,
                (i % 1000) * 10_000,
                "CNY",
                '["target"]',
                '["good_review"]' if i % 10 == 0 else "[]",
                "浙江省",
                "杭州市",
                policy,
                now,
            )

    def tombstones():  # type: ignore[no-untyped-def]
        for i in range(19, n, 20):
            yield (tombstone_key(f"cust{i:08d}"), f"erasure{i}", now)

    conn.executemany(
        "INSERT INTO audience (customer_id, scores_as_of, rfm_segment, lifecycle_stage, r_score,"
        " f_score, m_score, value_quadrant, recency_days, frequency, monetary_e4, currency,"
        " segments, tags, province, city, contact_policy, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows(),
    )
    conn.executemany(
        "INSERT INTO erased_customers (customer_hash, erasure_id, erased_at) VALUES (?,?,?)",
        tombstones(),
    )
    conn.commit()
    conn.close()
    return time.perf_counter() - started


def child(mode: str, url: str, campaign_id: str, chunk: int) -> None:
    """Runs in a fresh process; prints one JSON line with its figures."""
    from services.campaign.config import Settings
    from services.campaign.launch import launch
    from services.campaign.projection_repository import Projections
    from shared.db import Database

    db = Database.from_url(url)
    rss_before = peak_rss_mib() * 1024
    started = time.perf_counter()
    cpu_started = time.process_time()
    result: dict[str, object] = {}
    if mode == "scan":
        cursor, rows = None, 0
        while True:
            with db.sessions() as session:
                page = Projections(session).audience_page(cursor, chunk)
            if not page:
                break
            rows += len(page)
            cursor = page[-1]["customer_id"]
        result["rows"] = rows
    elif mode == "report":
        from services.campaign.report import build_report
        from services.campaign.service import get_campaign
        from shared.events import utcnow

        with db.sessions() as session:
            report = build_report(session, get_campaign(session, campaign_id), utcnow())
        result["targeted"] = report.targeted
    else:
        outcome = launch(db, campaign_id, Settings(launch_chunk_size=chunk))
        tally = outcome.tally
        result.update(
            targeted=tally.targeted,
            sent=tally.sent,
            deferred=tally.deferred,
            holdout=tally.holdout,
            excluded=tally.excluded,
            already_launched=outcome.already_launched,
        )
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["cpu_seconds"] = round(time.process_time() - cpu_started, 2)
    result["rss_before_mb"] = round(rss_before / 1024, 1)
    result["peak_rss_mb"] = round(peak_rss_mib(), 1)
    print(json.dumps(result))


def run_child(mode: str, url: str, campaign_id: str, chunk: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, url, campaign_id, str(chunk)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20,000 customers")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--keep", type=Path, help="keep the database in this folder")
    parser.add_argument("--figures", help="append the headline figures here (JSON lines)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_sink(args.figures)
    if args.child:
        mode, url, campaign_id, chunk = args.child
        child(mode, url, campaign_id, int(chunk))
        return 0
    n = 20_000 if args.quick else args.customers

    from services.campaign.app import MIGRATIONS
    from services.campaign.schemas import CampaignCreate
    from services.campaign.service import create_campaign
    from shared.db import Database, run_migrations

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "campaign.db"
    if db_path.exists():
        db_path.unlink()
    url = f"sqlite:///{db_path}"
    run_migrations(MIGRATIONS, url)
    filled = populate(db_path, n)
    db = Database.from_url(url)
    with db.unit_of_work() as session:
        campaign_id = create_campaign(
            session,
            CampaignCreate.model_validate(
                {
                    "name": "bench",
                    "purpose": "promotion",
                    "audience": {"segment_id": "target"},
                    "channels": ["sms", "email"],
                    "content": {
                        "template": "{{city}} {{rfm_segment}} 9折 {{code}}",
                        "variables": {"code": "B9"},
                    },
                    "holdout_share": 0.1,
                }
            ),
        ).campaign_id
    db.dispose()

    print(f"campaign launch benchmark: {n:,} customers, chunk {args.chunk}, SQLite {db_path}")
    print(f"  populate projection      {filled:8.1f} s")
    scan = run_child("scan", url, campaign_id, args.chunk)
    print(
        f"  baseline: scan audience  {scan['seconds']:8.1f} s (cpu {scan['cpu_seconds']} s)   peak RSS {scan['peak_rss_mb']} MB"
        f" (process at start {scan['rss_before_mb']} MB)"
    )
    first = run_child("launch", url, campaign_id, args.chunk)
    rate = n / float(first["seconds"])  # type: ignore[arg-type]
    print(
        f"  launch                   {first['seconds']:8.1f} s (cpu {first['cpu_seconds']} s)   peak RSS {first['peak_rss_mb']} MB"
        f"   {rate:,.0f} customers/s"
    )
    print(
        f"    targeted {first['targeted']:,}  sent {first['sent']:,} (deferred {first['deferred']:,})"
        f"  holdout {first['holdout']:,}  excluded {first['excluded']}"
    )
    again = run_child("launch", url, campaign_id, args.chunk)
    print(
        f"  relaunch (no-op)         {again['seconds']:8.1f} s   already_launched={again['already_launched']}"
    )
    report = run_child("report", url, campaign_id, args.chunk)
    print(
        f"  report                   {report['seconds']:8.1f} s (cpu {report['cpu_seconds']} s)"
        f"   peak RSS {report['peak_rss_mb']} MB"
    )
    record(
        Figure(
            "campaign",
            f"launch, {n:,}-customer audience (s)",
            float(first["seconds"]),  # type: ignore[arg-type]
            "s",
            "scan of the audience in launch pages (s)",
            float(scan["seconds"]),  # type: ignore[arg-type]
            "< 60" if n >= 1_000_000 else None,
            size=n,
            extra={"peak_rss_mib": first["peak_rss_mb"], "cpu_seconds": first["cpu_seconds"]},
        )
    )
    record(
        Figure(
            "campaign",
            f"launch peak RSS, {n:,}-customer audience (MiB)",
            float(first["peak_rss_mb"]),  # type: ignore[arg-type]
            "MiB",
            "scan peak RSS (MiB)",
            float(scan["peak_rss_mb"]),  # type: ignore[arg-type]
            size=n,
        )
    )
    size_mb = sum(p.stat().st_size for p in folder.glob("campaign.db*")) / 1e6
    print(f"  database size            {size_mb:8.0f} MB")
    verdict = "PASS" if float(first["seconds"]) < 60 or n < 1_000_000 else "MISS"  # type: ignore[arg-type]
    print(f"  target < 60 s for 1,000,000: {verdict if n >= 1_000_000 else 'n/a at this size'}")
    if not args.keep:
        for p in folder.glob("campaign.db*"):
            p.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
