"""Test helpers shared by every service's tests: broker, databases, topics, waiting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kafka import KafkaConsumer
from sqlalchemy import create_engine, text

from shared.events import decode_event

T = TypeVar("T")

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def wait_for(
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate}"
    ) from last_exc


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    expect: int | None = None,
    timeout: float = 15.0,
    decode: bool = True,
    predicate: Callable[[Any], bool] | None = None,
) -> list[Any]:
    """Read a topic from the beginning (no group): until ``expect`` matching records or timeout."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    try:
        from kafka import TopicPartition

        deadline = time.monotonic() + 10
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    item = decode_event(record.value) if decode else record
                    if predicate is None or predicate(item):
                        found.append(item)
            if expect is not None and len(found) >= expect:
                break
            if expect is None and not batch and found:
                break
        return found
    finally:
        consumer.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"crm_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def as_inbound(event: Any, offset: int = 0) -> Any:
    """An envelope event as the consumer loop hands it to a handler (on the event's topic)."""
    from shared.consumer_loop import Inbound

    return Inbound(event.topic, 0, offset, event.key, b"", event.type, str(event.event_id), event)


@contextmanager
def answering(body: dict[str, Any], status: int = 200) -> Iterator[int]:
    """A loopback HTTP server answering every GET with ``status`` and ``body`` as JSON (a
    stand-in for another process's /readyz); yields its port."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
