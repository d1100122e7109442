from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings, secrets_dir


class Settings(ServiceSettings):
    """Ingest settings; env prefix ``INGEST_``."""

    service_name: ClassVar[str] = "ingest"
    default_port: ClassVar[int] = 8001
    model_config = SettingsConfigDict(env_prefix="INGEST_", secrets_dir=secrets_dir(), extra="ignore")
