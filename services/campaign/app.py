from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.campaign import gauges, scheduler
from services.campaign.config import Settings
from services.campaign.consumer import CONSUMED_TOPICS, build_consumers
from services.campaign.entry_routes import router as entry_router
from services.campaign.routes import router
from services.campaign.runtime import CampaignRuntime
from services.campaign.subject_export import export_section
from shared import business_metrics
from shared.api import build_app
from shared.config import ServiceSettings
from shared.exports import ANSWERS, answering_exports
from shared.runtime import PeriodicJob

MIGRATIONS = Path(__file__).parent / "migrations"


def create_runtime(settings: ServiceSettings | None = None) -> CampaignRuntime:
    resolved = settings if isinstance(settings, Settings) else Settings()
    runtime = CampaignRuntime(
        resolved,
        migrations_dir=MIGRATIONS,
        consumer_factory=answering_exports(build_consumers, export_section),
        consumed_topics=(*CONSUMED_TOPICS, *ANSWERS.topics),
    )
    runtime.jobs.append(
        PeriodicJob(
            name="campaign-scheduler",
            interval=resolved.scheduler_interval_seconds,
            func=lambda: scheduler.tick(runtime.db, resolved, runtime.relay.notify),
            where="consumers",
        )
    )
    runtime.jobs.append(
        PeriodicJob(
            name="campaign-business-gauges",
            interval=business_metrics.refresh_seconds(),
            func=lambda: gauges.refresh(runtime),
            run_at_start=True,
            where="api",
        )
    )
    return runtime


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    runtime = create_runtime(settings)
    return build_app(
        runtime=runtime,
        title="CRM campaign",
        description="Campaigns aimed at segments or rules, sent through channel gateways on "
        "Kafka within each customer's contact policy, and measured against a holdout.",
        routers=[router, entry_router],
    )
