"""Logging setup: one JSON object per line (``CRM_LOG_FORMAT=text`` for a human format),
with the service name and the request id or event id in force; never personal data.

Messages name ids, counts and origins (``topic[partition]@offset``), never a name, mobile,
address or free text: the rule every ``log.*`` call in the services follows.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from shared.broker_state import KAFKA_LOG_FILTER

#: what the current request or consumed record is (request_id, event_id, record, batch)
_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "crm_log_context", default=None
)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (e.g. ``request_id``, ``event_id``) to every record logged inside."""
    current = _CONTEXT.get() or {}
    token = _CONTEXT.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, str]:
    """The fields :func:`log_context` set for the running request or record."""
    return dict(_CONTEXT.get() or {})


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "service", "logger", "message", <context>, "exc"?}`` on one line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            **current_context(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = current_context()
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        return line


def configure_logging(service: str, level: str = "INFO") -> None:
    """Configure the root logger for a service process (idempotent)."""
    root = logging.getLogger()
    if getattr(root, "_crm_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("CRM_LOG_FORMAT", "json").lower() == "text":
        handler.setFormatter(
            _TextFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    else:
        handler.setFormatter(JsonFormatter(service))
    # during a broker outage kafka-python repeats the same warning on every retry
    handler.addFilter(KAFKA_LOG_FILTER)
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("CRM_LOG_LEVEL", level).upper())
    # kafka-python is chatty at INFO about every connection
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # kafka-python's io loop warns "Task ... ran for 0.1xs ... blocking the event loop" when
    # one step of its own thread is slow; on a loaded host (GIL held by our request threads,
    # a GC pause) that is routine and says nothing actionable: its real failures (a broker
    # unreachable, a request timing out) come from other kafka loggers, which stay at WARNING
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # uvicorn's own loggers go through the root handler (cli.py passes log_config=None)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    root._crm_configured = True  # type: ignore[attr-defined]
