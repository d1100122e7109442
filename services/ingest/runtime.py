"""Ingest's runtime: the shared resources plus the validation rules, the write lock, the
epoch guard, the CSV import runner and the group committer of the single-record routes."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

from services.ingest.committer import GroupCommitter
from services.ingest.config import Settings
from services.ingest.delivery import EpochGuard, IngestRelay, make_write_lock
from services.ingest.imports import ImportRunner
from services.ingest.validation import Rules
from shared.api import runtime_dependency
from shared.runtime import ConsumerFactory, ServiceRuntime


class IngestRuntime(ServiceRuntime):
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
        self.rules = Rules.from_settings(settings)
        #: held by every ingest writer around its transaction (see make_write_lock)
        self.write_lock: AbstractContextManager[Any] = make_write_lock(self)
        self.epoch_guard = EpochGuard(self)
        relay = IngestRelay(self)
        relay.guard = self.epoch_guard
        self.relay = relay
        self.imports = ImportRunner(self)
        self.on_stop.append(self.imports.stop)
        self.committer = GroupCommitter(self)


#: the ingest runtime, for a route
RuntimeDep = Annotated[IngestRuntime, runtime_dependency(IngestRuntime)]
