"""Campaign's runtime: the shared resources plus the background launcher."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from services.campaign.background_launches import Launcher
from services.campaign.config import Settings
from shared.api import runtime_dependency
from shared.runtime import ConsumerFactory, ServiceRuntime


class CampaignRuntime(ServiceRuntime):
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
        self.launcher = Launcher(self.db, settings, self.relay.notify)
        self.on_stop.append(self.launcher.stop)


#: the campaign runtime, for a route
RuntimeDep = Annotated[CampaignRuntime, runtime_dependency(CampaignRuntime)]
