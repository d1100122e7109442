"""``python -m services.ingest replay``: re-publish a range of the event store to Kafka."""

from __future__ import annotations

import argparse
import time
from datetime import datetime

from services.ingest import replay
from shared.runtime import ServiceRuntime


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a timezone offset, e.g. 2026-11-01T00:00:00+08:00")
    return moment


def replay_command(runtime: ServiceRuntime, argv: list[str]) -> int:
    """Queue the current versions in a range and publish them (waits until all are sent)."""
    parser = argparse.ArgumentParser(prog="python -m services.ingest replay")
    parser.add_argument("--from-seq", type=int, help="first sequence number (inclusive)")
    parser.add_argument("--to-seq", type=int, help="last sequence number (inclusive)")
    parser.add_argument("--since", type=_aware, help="received at or after (ISO 8601, with offset)")
    parser.add_argument("--until", type=_aware, help="received before (ISO 8601, with offset)")
    parser.add_argument("--kind", action="append", choices=["order", "customer", "interaction"])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for Kafka")
    args = parser.parse_args(argv)
    runtime.migrate()
    with runtime.db.unit_of_work() as session:
        queued = replay.replay(
            session,
            from_sequence=args.from_seq,
            to_sequence=args.to_seq,
            since=args.since,
            until=args.until,
            kinds=args.kind,
        )
    print(f"queued {queued} events for publication", flush=True)
    deadline = time.monotonic() + args.timeout
    published = 0
    try:
        while time.monotonic() < deadline:
            try:
                sent = runtime.relay.relay_once()
            except Exception as exc:  # broker not there yet: keep trying until the deadline
                print(f"broker not reachable ({type(exc).__name__}); retrying", flush=True)
                time.sleep(1)
                continue
            published += sent
            if sent == 0:
                print(f"published {published} records (outbox empty)", flush=True)
                return 0
        print(f"timed out; {runtime.relay.pending()} records still in the outbox", flush=True)
        return 1
    finally:
        runtime.publisher.close()
