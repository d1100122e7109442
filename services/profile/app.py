from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from kafka.errors import KafkaError

from services.profile.apikey_republish import KeyRepublisher
from services.profile.apikey_routes import router as apikey_router
from services.profile.config import Settings
from services.profile.consumer import CONSUMED_TOPICS, build_consumers
from services.profile.erasure_acks import ErasureWatch
from services.profile.erasure_routes import router as erasure_router
from services.profile.export_routes import router as export_router
from services.profile.routes import router
from shared.api import build_app
from shared.config import ServiceSettings
from shared.events import utcnow
from shared.runtime import PeriodicJob, ServiceRuntime

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def create_runtime(settings: ServiceSettings | None = None) -> ServiceRuntime:
    settings = settings or Settings()
    runtime = ServiceRuntime(
        settings,
        MIGRATIONS,
        consumer_factory=build_consumers,
        consumed_topics=CONSUMED_TOPICS,
    )
    republisher = KeyRepublisher(runtime)
    runtime.extras["key_republisher"] = republisher

    def check_keys() -> None:
        try:
            republisher.check()
        except (ConnectionError, OSError, TimeoutError, KafkaError) as exc:
            log.info("profile: managed keys on the broker not verified (%s)", type(exc).__name__)

    interval = getattr(runtime.settings, "apikey_republish_check_seconds", 3.0)
    runtime.jobs.append(PeriodicJob("profile-apikeys", interval, check_keys, run_at_start=True))
    assert isinstance(runtime.settings, Settings)
    watch = ErasureWatch(timedelta(minutes=runtime.settings.erasure_overdue_minutes))
    runtime.extras["erasure_watch"] = watch

    def check_erasures() -> None:
        with runtime.db.sessions() as session:
            watch.check(session, utcnow())

    runtime.jobs.append(
        PeriodicJob(
            "profile-erasures",
            runtime.settings.erasure_check_seconds,
            check_erasures,
            run_at_start=True,
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
