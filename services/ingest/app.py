from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.ingest.config import Settings
from services.ingest.consumer import RAW_TYPES, build_consumers
from services.ingest.routes import router
from shared.api import build_app
from shared.config import ServiceSettings
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def create_runtime(settings: ServiceSettings | None = None) -> ServiceRuntime:
    return ServiceRuntime(
        settings or Settings(),
        MIGRATIONS,
        consumer_factory=build_consumers,
        consumed_topics=tuple(RAW_TYPES),
    )


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    runtime = create_runtime(settings)
    return build_app(
        runtime=runtime,
        title="CRM ingest",
        description="Validates, normalises and deduplicates orders, customers and interactions; "
        "stores every accepted record durably and relays it to Kafka.",
        routers=[router],
    )
