"""The services' clock: moved by an offset file outside production, never in production."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared import clock
from shared.events import utcnow


def test_an_offset_file_moves_the_clock_and_a_new_offset_is_read_within_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "offset"
    monkeypatch.setenv(clock.OFFSET_FILE_VARIABLE, str(path))
    monkeypatch.delenv(clock.ENVIRONMENT_VARIABLE, raising=False)
    assert abs(utcnow() - datetime.now(UTC)) < timedelta(seconds=5)  # no file: no offset
    clock.write_offset(path, 86_400)
    time.sleep(1.1)
    assert timedelta(hours=23) < utcnow() - datetime.now(UTC) < timedelta(hours=25)
    clock.write_offset(path, -3_600)
    time.sleep(1.1)
    assert timedelta(minutes=-61) < clock.now() - datetime.now(UTC) < timedelta(minutes=-59)


def test_production_ignores_the_offset_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "offset"
    clock.write_offset(path, 86_400 * 3)
    monkeypatch.setenv(clock.OFFSET_FILE_VARIABLE, str(path))
    monkeypatch.setenv(clock.ENVIRONMENT_VARIABLE, "production")
    assert clock.offset() == timedelta(0)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_an_unreadable_offset_means_none(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    path.write_text("tomorrow")
    assert clock.read_offset(str(path)) == timedelta(0)
    assert clock.read_offset(str(tmp_path / "missing")) == timedelta(0)
