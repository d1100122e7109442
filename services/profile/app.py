from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from kafka.errors import KafkaError

from services.profile.apikey_routes import router as apikey_router
from services.profile.config import Settings
from services.profile.consumer import CONSUMED_TOPICS, build_consumers
from services.profile.erasure_routes import router as erasure_router
from services.profile.export_routes import router as export_router
from services.profile.routes import router
from services.profile.runtime import ProfileRuntime
from shared.api import build_app
from shared.config import ServiceSettings
from shared.events import utcnow
from shared.runtime import PeriodicJob

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def create_runtime(settings: ServiceSettings | None = None) -> ProfileRuntime:
    settings = settings or Settings()
    assert isinstance(settings, Settings)
    runtime = ProfileRuntime(
        settings,
        migrations_dir=MIGRATIONS,
        consumer_factory=build_consumers,
        consumed_topics=CONSUMED_TOPICS,
    )

    def check_keys() -> None:
        try:
            runtime.key_republisher.check()
        except (ConnectionError, OSError, TimeoutError, KafkaError) as exc:
            log.info("profile: managed keys on the broker not verified (%s)", type(exc).__name__)

    interval = settings.apikey_republish_check_seconds
    runtime.jobs.append(
        PeriodicJob("profile-apikeys", interval, check_keys, run_at_start=True, where="api")
    )

    def check_erasures() -> None:
        with runtime.db.sessions() as session:
            runtime.erasure_watch.check(session, utcnow())

    runtime.jobs.append(
        PeriodicJob(
            "profile-erasures",
            runtime.settings.erasure_check_seconds,
            check_erasures,
            run_at_start=True,
            where="consumers",
        )
    )
    return runtime


def create_app(settings: ServiceSettings | None = None, *, start_runtime: bool = True) -> FastAPI:
    """The profile API; ``start_runtime=False`` serves without broker threads (tests)."""
    runtime = create_runtime(settings)
    return build_app(
        runtime=runtime,
        title="CRM profile",
        description="One unified profile per customer (basic, subjective and transaction "
        "facets with provenance), identity resolution, tags, contact policy, search, "
        "export and erasure. See docs/profile.md.",
        routers=[router, erasure_router, apikey_router, export_router],
        start_runtime=start_runtime,
    )
