"""Profile's runtime: the shared resources plus the managed keys' republisher and the
watch over overdue erasures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from services.profile.apikey_republish import KeyRepublisher
from services.profile.config import Settings
from services.profile.erasure_acks import ErasureWatch
from shared.api import runtime_dependency
from shared.runtime import ConsumerFactory, ServiceRuntime


class ProfileRuntime(ServiceRuntime):
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
        self.key_republisher = KeyRepublisher(self)
        self.erasure_watch = ErasureWatch(timedelta(minutes=settings.erasure_overdue_minutes))


#: the profile runtime, for a route
RuntimeDep = Annotated[ProfileRuntime, runtime_dependency(ProfileRuntime)]
