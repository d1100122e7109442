"""Group commit: single-record requests that arrive together share one transaction.

A transaction (and, on SQLite, its commit) costs far more than validating and storing one
order, so a dedicated thread takes every single-record request waiting at that moment and
stores them together. Each caller still gets its own result, and nothing is answered
before its transaction committed.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.ingest import service
from services.ingest.delivery import write_lock
from shared.runtime import ServiceRuntime


@dataclass
class _Request:
    kind: str
    record: Any
    source: str
    future: Future[service.ItemResult] = field(default_factory=Future)


class GroupCommitter:
    def __init__(self, runtime: ServiceRuntime, max_group: int = 1000) -> None:
        self.runtime = runtime
        self.max_group = max_group
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, kind: str, record: Any, source: str) -> Future[service.ItemResult]:
        """Queue one record to be stored with whatever else is waiting; the future resolves
        to its result once committed (await it with ``asyncio.wrap_future``)."""
        request = _Request(kind, record, source)
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
        rules = self.runtime.extras["rules"]
        try:
            prepared = [
                (
                    requests,
                    service.prepare(kind, [r.record for r in requests], source=source, rules=rules),
                )
                for (kind, source), requests in by_kind.items()
            ]
            for attempt in range(3):
                try:
                    outcomes: list[tuple[_Request, service.ItemResult]] = []
                    with write_lock(self.runtime), self.runtime.db.unit_of_work() as session:
                        for requests, batch in prepared:
                            results = service.store(session, batch)
                            outcomes.extend(zip(requests, results, strict=True))
                    break
                except IntegrityError:
                    # a concurrent writer (another replica) stored a version first: decide again
                    if attempt == 2:
                        raise
        except BaseException as exc:
            for request in group:
                request.future.set_exception(exc)
            return
        if any(result.event_id for _, result in outcomes):
            self.runtime.relay.notify()
        for request, result in outcomes:
            request.future.set_result(result)
