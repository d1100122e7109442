"""Segment's runtime: the shared resources plus the clock every scoring use case reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated

from services.segment.config import Settings
from shared.api import runtime_dependency
from shared.events import utcnow
from shared.runtime import ConsumerFactory, ServiceRuntime


class SegmentRuntime(ServiceRuntime):
    settings: Settings

    def __init__(
        self,
        settings: Settings,
        *,
        migrations_dir: Path,
        consumer_factory: ConsumerFactory,
        consumed_topics: Sequence[str],
    ) -> None:
        super().__init__(settings, migrations_dir, consumer_factory, consumed_topics)
        #: "now" for scoring, reports and the scheduled runs; tests replace it with a fixed time
        self.clock: Callable[[], datetime] = utcnow


#: the segment runtime, for a route
RuntimeDep = Annotated[SegmentRuntime, runtime_dependency(SegmentRuntime)]
