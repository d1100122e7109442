"""Bulk import of historical orders from a CSV file, as a background job.

The upload is copied to a spool file under the data folder; one worker thread reads
it as a stream (``csv`` over a decoding text reader, never the whole file) in chunks
of ``import_chunk_rows`` rows. Each chunk is validated with the same rules as the
API and stored in one transaction together with the job's progress counters and
the chunk's rejected rows, so progress always matches what is stored. What a file's rows
make (encoding, header layouts, order objects) is ``import_rows``.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import logging
import queue
import shutil
import threading
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
from sqlalchemy.orm import Session

from services.ingest import import_grouping, service
from services.ingest.committer import in_write_transaction
from services.ingest.export_layouts import LAYOUTS
from services.ingest.import_rows import (
    OUR_COLUMNS,
    ItemDetails,
    RowMapper,
    detect_encoding,
    read_rows,
)
from services.ingest.models import ImportJob
from services.ingest.repository import Imports
from services.ingest.schemas import ImportJobRead, ImportRejectionRead
from shared.errors import ValidationProblem
from shared.events import utcnow
from shared.pagination import decode_cursor, encode_cursor

if TYPE_CHECKING:
    from services.ingest.runtime import IngestRuntime

log = logging.getLogger(__name__)

FILE_DESCRIPTION = (
    "CSV, UTF-8 (with or without BOM) or GBK/GB18030, detected unless `encoding` is given; "
    "first line is the header. Headers: our column names ("
    + ", ".join(OUR_COLUMNS)
    + ") or a platform's export headers, recognised: "
    + "; ".join(f"{layout.name} ({', '.join(layout.columns)})" for layout in LAYOUTS)
    + ". Platform statuses are mapped (Taobao 交易成功 completed, 等待买家付款 created, 交易关闭 "
    "cancelled, ...; JD 等待出库 paid, 完成 completed, ...; Shopify financial status, "
    "Cancelled at; Pinduoduo 待发货 paid, 已签收 completed, ...); a refund amount > 0 makes the order refunded (whole amount) or "
    "partially_refunded. Consecutive rows sharing an order id are one order with all their "
    'items. Values wrapped as ="..." or with a leading apostrophe (spreadsheet exports) are '
    "unwrapped. Each order is validated like POST /v1/orders."
)
MAPPING_DESCRIPTION = (
    'Optional JSON object {"their header": "our column name"} for other layouts; it takes '
    "precedence over the built-in header names."
)

_ENCODINGS = {
    "utf-8": "utf-8-sig",
    "utf8": "utf-8-sig",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "gb18030": "gb18030",
}


def parse_options(
    mapping: str | None, encoding: str | None, currency: str | None, channel: str | None
) -> dict[str, Any]:
    """Check the form fields of an import request."""
    options: dict[str, Any] = {}
    if mapping:
        try:
            parsed = orjson.loads(mapping)
        except orjson.JSONDecodeError as exc:
            raise ValidationProblem("mapping must be a JSON object") from exc
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise ValidationProblem("mapping must be a JSON object of strings")
        unknown = sorted(v for v in parsed.values() if v not in OUR_COLUMNS)
        if unknown:
            raise ValidationProblem(f"mapping targets unknown columns: {unknown}")
        options["mapping"] = parsed
    if encoding:
        if encoding.lower() not in _ENCODINGS:
            raise ValidationProblem(f"encoding must be one of {sorted(_ENCODINGS)}")
        options["encoding"] = _ENCODINGS[encoding.lower()]
    if currency:
        options["currency"] = currency
    if channel:
        options["channel"] = channel
    return options


class ImportInterrupted(Exception):
    """The service is stopping: the job ends after the chunk it stored last."""

    def __str__(self) -> str:
        return str(self.args[0])


class ImportRunner:
    """Runs import jobs one at a time in a worker thread."""

    def __init__(self, runtime: IngestRuntime) -> None:
        self.runtime = runtime
        self.settings: Any = runtime.settings
        self.folder = Path(self.settings.data_dir) / "imports"
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def submit(
        self,
        upload: IO[bytes],
        filename: str | None,
        options: dict[str, Any],
        details: IO[bytes] | None = None,
    ) -> ImportJob:
        """Spool the upload (and a details file of items, joined by order id) to disk,
        record the job and queue it; returns the job."""
        job_id = str(uuid.uuid4())
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{job_id}.csv"
        with open(path, "wb") as out:
            shutil.copyfileobj(upload, out, 1 << 20)
        if details is not None:
            with open(self._details_path(job_id), "wb") as out:
                shutil.copyfileobj(details, out, 1 << 20)
            options = {**options, "details": True}
        job = ImportJob(
            job_id=job_id,
            status="queued",
            filename=(filename or "")[:255] or None,
            options=options,
            bytes_total=path.stat().st_size,
            rows_read=0,
            accepted=0,
            duplicate=0,
            rejected=0,
            created_at=utcnow(),
        )
        with self.runtime.db.unit_of_work() as session:
            Imports(session).add(job)
        self._ensure_worker()
        self._queue.put(job_id)
        return job

    def _details_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.items.csv"

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="ingest-import", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Stop after the chunk being stored (it commits whole); the running job keeps its
        spool file and is resumed by ``resume_interrupted`` at the next start."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(30)

    def resume_interrupted(self) -> None:
        """Jobs a previous process left unfinished are queued again: each resumes after the
        last line of its last committed chunk (``last_line``). One whose spool file is gone
        is marked failed (re-submitting is safe: stored rows come back as duplicates)."""
        with self.runtime.db.unit_of_work() as session:
            repo = Imports(session)
            unfinished = repo.unfinished()
            resumable = []
            for job in sorted(unfinished, key=lambda j: j.created_at):
                if (self.folder / f"{job.job_id}.csv").exists():
                    resumable.append(job.job_id)
                    continue
                repo.update(
                    job.job_id,
                    status="failed",
                    error="interrupted by a restart and its spooled file is gone; submit the "
                    "file again (rows already imported are reported as duplicates)",
                    finished_at=utcnow(),
                )
        for job_id in resumable:
            log.info("import %s: resuming after a restart", job_id)
            self._ensure_worker()
            self._queue.put(job_id)

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            path = self.folder / f"{job_id}.csv"
            try:
                self.run(job_id, path)
            except ImportInterrupted as exc:
                # the job stays running and keeps its spool file: the next start resumes it
                log.warning("import %s: %s", job_id, exc)
                continue
            except Exception as exc:
                log.exception("import %s failed", job_id)
                with self.runtime.db.unit_of_work() as session:
                    Imports(session).update(
                        job_id,
                        status="failed",
                        error=f"{type(exc).__name__}: {exc}"[:2000],
                        finished_at=utcnow(),
                    )
            for spooled in (path, self._details_path(job_id)):
                with contextlib.suppress(OSError):
                    spooled.unlink()

    def run(self, job_id: str, path: Path) -> None:
        """Import one spooled file (blocking)."""
        with self.runtime.db.sessions() as session:
            job = Imports(session).get(job_id)
            assert job is not None
            options = dict(job.options or {})
            resume_after = int(job.last_line or 0)
            started_at = job.started_at
        encoding = str(options.get("encoding") or detect_encoding(path))
        rows = read_rows(path, encoding)
        try:
            header = next(rows)
        except StopIteration:
            header = []
        mapper = RowMapper(header, options, self.settings.import_default_currency)
        if options.get("details"):
            mapper.details = ItemDetails(self._details_path(job_id))
        with self.runtime.db.unit_of_work() as session:
            Imports(session).update(
                job_id,
                status="running",
                encoding=encoding,
                header_format=mapper.format,
                started_at=started_at or utcnow(),
            )
        if mapper.missing:
            raise ValueError(f"the header lacks required columns: {mapper.missing}")
        # orders whose rows are not consecutive are held aside and stored after the rest
        try:
            scattered = import_grouping.scattered_order_ids(
                itertools.islice(read_rows(path, encoding), 1, None), mapper.order_id
            )
        except UnicodeDecodeError:
            scattered = set()  # the import stops at the bad line (below), as it reports
        except csv.Error:
            scattered = set()
        held: dict[str, list[tuple[int, list[str]]]] = {}
        # a chunk is a list of orders, each the consecutive rows sharing an order id (a
        # line-item export writes one row per item); a chunk ends only between orders
        chunk: list[list[tuple[int, list[str]]]] = []
        rows_in_chunk = 0
        group: list[tuple[int, list[str]]] = []
        group_id = ""
        row_number = 1
        kept = self._kept_so_far(job_id) if resume_after else 0
        try:
            for row in rows:
                row_number += 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                order_id = mapper.order_id(row)
                if scattered and order_id and hash(order_id) in scattered:
                    held.setdefault(order_id, []).append((row_number, row))
                    continue
                if row_number <= resume_after:
                    continue  # committed before the restart
                if group and order_id and order_id == group_id:
                    group.append((row_number, row))
                    continue
                if group:
                    chunk.append(group)
                    rows_in_chunk += len(group)
                group, group_id = [(row_number, row)], order_id
                if rows_in_chunk >= self.settings.import_chunk_rows:
                    kept = self._chunk(job_id, mapper, chunk, kept)
                    chunk, rows_in_chunk = [], 0
                    if self._stopping.is_set():
                        raise ImportInterrupted(
                            f"the service stopped after line {row_number - 1}; the job "
                            "resumes from there at the next start"
                        )
        except UnicodeDecodeError as exc:
            if group:
                chunk.append(group)
            if chunk:
                self._chunk(job_id, mapper, chunk, kept)
            raise ValueError(
                f"the file is not valid {encoding} near line {row_number + 1}"
            ) from exc
        if group:
            chunk.append(group)
        if chunk:
            kept = self._chunk(job_id, mapper, chunk, kept)
        chunk, rows_in_chunk = [], 0
        for rows_of_order in held.values():
            chunk.append(rows_of_order)
            rows_in_chunk += len(rows_of_order)
            if rows_in_chunk >= self.settings.import_chunk_rows:
                kept = self._chunk(job_id, mapper, chunk, kept, last_line=row_number)
                chunk, rows_in_chunk = [], 0
        if chunk:
            self._chunk(job_id, mapper, chunk, kept, last_line=row_number)
        with self.runtime.db.unit_of_work() as session:
            Imports(session).update(job_id, status="completed", finished_at=utcnow())

    def _kept_so_far(self, job_id: str) -> int:
        with self.runtime.db.sessions() as session:
            return Imports(session).count_rows(job_id)

    def _chunk(
        self,
        job_id: str,
        mapper: RowMapper,
        chunk: list[list[tuple[int, list[str]]]],
        kept: int,
        last_line: int | None = None,
    ) -> int:
        """Store one chunk (whole orders) with its progress, rejected rows and rows accepted
        with warnings (one transaction); returns how many such rows are kept so far."""
        orders = [mapper.order_of([r for _, r in group]) for group in chunk]
        prepared = service.prepare("order", orders, source="import", rules=self.runtime.rules)
        rows = sum(len(group) for group in chunk)
        last_line = last_line or chunk[-1][-1][0]

        def store(session: Session) -> int:
            results = service.store(session, prepared)
            counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "warned": 0}
            noted = []
            now_kept = kept
            for group, result in zip(chunk, results, strict=True):
                counts[result.status] += 1
                warned = result.status == "accepted" and bool(result.warnings)
                counts["warned"] += warned
                if result.status != "rejected" and not warned:
                    continue
                if now_kept >= self.settings.import_max_rejections_kept:
                    continue
                now_kept += 1
                problems = result.reasons if result.status == "rejected" else result.warnings
                reasons = [r.as_dict() for r in problems]
                widths = {len(row) for _, row in group} - {mapper.width}
                if widths and result.status == "rejected":
                    reasons.insert(
                        0,
                        {
                            "field": "",
                            "code": "csv.columns",
                            "message": f"has {min(widths)} columns, the header {mapper.width}",
                        },
                    )
                noted.append(
                    {
                        "job_id": job_id,
                        "row_number": group[0][0],
                        "order_id": result.id,
                        "reasons": reasons,
                        "outcome": "rejected" if result.status == "rejected" else "warning",
                    }
                )
            repo = Imports(session)
            repo.add_rejections(noted)
            repo.add_progress(job_id, rows, **counts, last_line=last_line)
            return now_kept

        kept = in_write_transaction(self.runtime, store)
        self.runtime.relay.notify()
        return kept


def job_read(
    job: ImportJob, rejections: list[Any], next_cursor: str | None = None
) -> ImportJobRead:
    return ImportJobRead(
        job_id=job.job_id,
        status=job.status,
        filename=job.filename,
        encoding=job.encoding,
        header_format=job.header_format,
        rows_read=job.rows_read,
        accepted=job.accepted,
        duplicate=job.duplicate,
        rejected=job.rejected,
        warned=job.warned or 0,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        rejections=[
            ImportRejectionRead(row=r.row_number, order_id=r.order_id, reasons=r.reasons)
            for r in rejections
            if r.outcome != "warning"
        ],
        warnings=[
            ImportRejectionRead(row=r.row_number, order_id=r.order_id, reasons=r.reasons)
            for r in rejections
            if r.outcome == "warning"
        ],
        next_cursor=next_cursor,
    )


def load_job(session: Session, job_id: str, cursor: str | None, limit: int) -> ImportJobRead | None:
    repo = Imports(session)
    job = repo.get(job_id)
    if job is None:
        return None
    position = decode_cursor(cursor) or {}
    after = int(position.get("row", 0))
    found = repo.rejections(job_id, after, limit + 1)
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        next_cursor = encode_cursor({"row": found[-1].row_number})
    return job_read(job, found, next_cursor)
