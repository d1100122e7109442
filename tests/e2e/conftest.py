"""The ``system`` fixture: the four services as real processes on the session broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.broker import EmbeddedBroker
from tests.e2e.system import RunningSystem, running_system


@pytest.fixture
def system(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[RunningSystem]:
    """``python -m devtools.devrun`` with a fresh data folder, topic namespace and free ports."""
    with running_system(broker, tmp_path) as running:
        yield running
