"""The services' wall clock, which tests can move forward (never in production).

Every service reads the time through :func:`now` (``shared.events.utcnow`` delegates
here). Outside production (``CRM_ENVIRONMENT`` is not ``production``), the variable
``CRM_CLOCK_OFFSET_FILE`` may name a file holding a number of seconds: that offset is
added to the real time. The file is re-read at most once a second, so a test that writes
a new offset moves the clock of every running process within a second, without
restarting them (that is how the end-to-end tests cross a day boundary). A missing,
empty or unreadable file means no offset.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

OFFSET_FILE_VARIABLE = "CRM_CLOCK_OFFSET_FILE"
ENVIRONMENT_VARIABLE = "CRM_ENVIRONMENT"

_REREAD_SECONDS = 1.0
_lock = threading.Lock()
_cached: tuple[str | None, float, timedelta] = (None, float("-inf"), timedelta(0))


def offset_file() -> str | None:
    """The offset file in force, or None (unset, or the environment is production)."""
    if os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() == "production":
        return None
    return os.environ.get(OFFSET_FILE_VARIABLE) or None


def read_offset(path: str) -> timedelta:
    """The offset a file holds (seconds, may be fractional or negative); 0 if none."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
        return timedelta(seconds=float(text)) if text else timedelta(0)
    except (OSError, ValueError):
        return timedelta(0)


def offset() -> timedelta:
    """How far this process's clock is moved from the real time."""
    global _cached
    path = offset_file()
    if path is None:
        return timedelta(0)
    checked = time.monotonic()
    with _lock:
        cached_path, read_at, value = _cached
        if cached_path == path and checked - read_at < _REREAD_SECONDS:
            return value
        value = read_offset(path)
        _cached = (path, checked, value)
        return value


def write_offset(path: str | os.PathLike[str], seconds: float) -> None:
    """Move the clock of every process reading ``path`` (tests): atomically replaced."""
    target = os.fspath(path)
    temporary = f"{target}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(repr(float(seconds)))
    os.replace(temporary, target)


def now() -> datetime:
    """The current time, timezone-aware, in UTC (moved by the offset file outside production)."""
    return datetime.now(UTC) + offset()
