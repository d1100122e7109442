from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared import manifest
from shared.config import ServiceSettings, secrets_dir


class Settings(ServiceSettings):
    """Campaign settings; env prefix ``CAMPAIGN_``."""

    service_name: ClassVar[str] = "campaign"
    default_port: ClassVar[int] = manifest.service("campaign").port
    model_config = SettingsConfigDict(
        env_prefix="CAMPAIGN_", secrets_dir=secrets_dir(), extra="ignore", populate_by_name=True
    )

    max_poll_records: int = Field(1000, ge=1)
    # launch
    launch_chunk_size: int = Field(5000, ge=1, description="customers per launch transaction")
    # a customer without a known contact policy has consented to nothing (privacy first);
    # set true only where consent is collected outside this system
    assume_consent_without_policy: bool = False
    # the frequency cap used when a customer's policy sets none (None: no cap)
    default_max_contacts: int | None = Field(None, ge=0)
    default_period_days: int = Field(30, ge=1)
    # SQLite: during a launch, checkpoint the WAL only every N pages (4 KiB) instead of
    # SQLite's 1000; a launch of a million customers writes ~1 GB. 0: SQLite's default.
    sqlite_launch_checkpoint_pages: int = Field(65536, ge=0)
    # timers
    scheduler_interval_seconds: float = Field(
        30.0, gt=0, description="how often scheduled / recurring / unpaid-order triggers run"
    )
