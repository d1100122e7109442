"""Group commit: single-record requests that arrive together share one transaction.

A transaction (and, on SQLite, its commit) costs far more than validating and storing one
order, so a dedicated thread takes every single-record request waiting at that moment and
stores them together. Each caller still gets its own result, and nothing is answered
before its transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.ingest import service

if TYPE_CHECKING:
    from services.ingest.runtime import IngestRuntime

T = TypeVar("T")


@dataclass
class _Request:
    kind: str
    record: Any
    source: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[service.ItemResult]


class GroupCommitter:
    def __init__(self, runtime: IngestRuntime, max_group: int = 1000) -> None:
        self.runtime = runtime
        self.max_group = max_group
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, kind: str, record: Any, source: str) -> asyncio.Future[service.ItemResult]:
        """Queue one record to be stored with whatever else is waiting; await the returned
        future (call from the event loop) for its result once committed."""
        loop = asyncio.get_running_loop()
        request = _Request(kind, record, source, loop, loop.create_future())
        self._ensure_thread()
        self._queue.put(request)
        return request.future

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="ingest-group-commit", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < self.max_group:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(group)

    def _commit(self, group: list[_Request]) -> None:
        by_kind: dict[tuple[str, str], list[_Request]] = {}
        for request in group:
            by_kind.setdefault((request.kind, request.source), []).append(request)
        try:
            prepared = [
                (
                    requests,
                    service.prepare(
                        kind, [r.record for r in requests], source=source, rules=self.runtime.rules
                    ),
                )
                for (kind, source), requests in by_kind.items()
            ]
            stored = store_batches(self.runtime, [batch for _, batch in prepared])
            outcomes = [
                pair
                for (requests, _), results in zip(prepared, stored, strict=True)
                for pair in zip(requests, results, strict=True)
            ]
        except BaseException as exc:
            _settle(group, [exc] * len(group))
            return
        if any(result.event_id for _, result in outcomes):
            self.runtime.relay.notify()
        _settle([r for r, _ in outcomes], [result for _, result in outcomes])


def store_batches(
    runtime: IngestRuntime, batches: list[service.Prepared]
) -> list[list[service.ItemResult]]:
    """Store prepared batches in one transaction under the write lock; each batch's results."""
    return in_write_transaction(
        runtime, lambda session: [service.store(session, batch) for batch in batches]
    )


def in_write_transaction(runtime: IngestRuntime, work: Callable[[Session], T]) -> T:
    """``work(session)`` in one transaction under the write lock, run again (up to three
    times in all) if a concurrent writer, e.g. another replica on PostgreSQL, stored one of
    the same versions first: the unique version index refuses the second, and deciding again
    finds them stored. ``work`` must be safe to repeat (it runs in a fresh transaction)."""
    for attempt in range(3):
        try:
            with runtime.write_lock, runtime.db.unit_of_work() as session:
                return work(session)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _settle(requests: list[_Request], results: list[Any]) -> None:
    """Resolve a group's futures with one wake-up per event loop, not one per request
    (each cross-thread wake-up is a socket write: ~50 us each, measured)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request, Any]]] = {}
    for request, result in zip(requests, results, strict=True):
        by_loop.setdefault(request.loop, []).append((request, result))
    for loop, pairs in by_loop.items():
        # RuntimeError: the loop closed (shutdown), nobody waits any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[_Request, Any]]) -> None:
    for request, result in pairs:
        if request.future.done():  # the client went away and the request was cancelled
            continue
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)
