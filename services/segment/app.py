from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI

from services.segment import clv_metrics, clv_routes, clv_runs, gauges, rescoring
from services.segment.config import Settings
from services.segment.consumer import CONSUMED_TOPICS, build_consumers
from services.segment.routes import router
from services.segment.runtime import SegmentRuntime
from services.segment.subject_export import export_section
from services.segment.sweep import DaySweep, SweepOutcome, mark_swept
from shared import business_metrics
from shared.api import build_app
from shared.config import ServiceSettings
from shared.exports import ANSWERS, answering_exports
from shared.runtime import PeriodicJob

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def create_runtime(settings: ServiceSettings | None = None) -> SegmentRuntime:
    settings = settings or Settings()
    assert isinstance(settings, Settings)
    runtime = SegmentRuntime(
        settings,
        migrations_dir=MIGRATIONS,
        consumer_factory=answering_exports(build_consumers, export_section),
        consumed_topics=(*CONSUMED_TOPICS, *ANSWERS.topics),
    )
    day_sweep = DaySweep(runtime.db)
    runtime.jobs.append(
        PeriodicJob(
            "segment-day-sweep",
            settings.day_sweep_check_seconds,
            lambda: sweep_day_boundaries(runtime, day_sweep),
            run_at_start=True,
            where="consumers",
        )
    )
    runtime.jobs.append(
        PeriodicJob(
            "segment-rescoring",
            settings.rescore_interval_seconds,
            lambda: sweep(runtime),
            run_at_start=settings.rescore_at_start,
            where="consumers",
        )
    )
    runtime.jobs.append(
        PeriodicJob(
            "segment-cut-point-check",
            settings.cut_point_check_seconds,
            lambda: refresh_if_stale(runtime),
            where="consumers",
        )
    )
    runtime.jobs.append(
        PeriodicJob(
            "segment-business-gauges",
            business_metrics.refresh_seconds(),
            lambda: gauges.refresh(runtime),
            run_at_start=True,
            where="api",
        )
    )
    runtime.jobs.append(
        PeriodicJob(
            "segment-clv-fit",
            settings.clv_fit_interval_seconds,
            lambda: fit_clv(runtime),
            run_at_start=settings.rescore_at_start,
            where="consumers",
        )
    )
    runtime.jobs.append(
        PeriodicJob(
            "segment-clv-gauges",
            settings.clv_gauge_seconds,
            lambda: refresh_clv_gauges(runtime),
            run_at_start=True,
            where="api",
        )
    )
    return runtime


def refresh_clv_gauges(runtime: SegmentRuntime) -> None:
    with runtime.db.unit_of_work() as session:
        clv_metrics.refresh(session)


def fit_clv(runtime: SegmentRuntime) -> clv_runs.ClvRun:
    """The scheduled predictive CLV run: fits per currency, predictions, segments re-evaluated."""
    with runtime.db.unit_of_work() as session:
        outcome = clv_runs.run(session, runtime.clock(), clv_runs.options_from(runtime.settings))
    clv_metrics.publish(outcome)
    runtime.relay.notify()
    log.info(
        "CLV fits: %s",
        ", ".join(f"{f.currency} {f.status}" for f in outcome.fits) or "no purchases",
    )
    return outcome


def refresh_if_stale(runtime: SegmentRuntime) -> rescoring.RescoringOutcome | None:
    """Rerun the batch early when the scored population outgrew the last cut points."""
    with runtime.db.unit_of_work() as session:
        stale = rescoring.cut_points_stale(session, runtime.clock())
    return sweep(runtime) if stale else None


def sweep_day_boundaries(runtime: SegmentRuntime, day_sweep: DaySweep) -> SweepOutcome:
    """Rescore whom the date moved since the last day swept (a no-op within a day)."""
    outcome = day_sweep.run(runtime.clock())
    if outcome.customers:
        runtime.relay.notify()
        log.info(
            "day sweep through %s: %d customers rescored, %d changes, %.2fs",
            outcome.swept_through,
            outcome.customers,
            outcome.events,
            outcome.seconds,
        )
    return outcome


def sweep(runtime: SegmentRuntime) -> rescoring.RescoringOutcome:
    """The scheduled full rescoring: new cut points, lifecycle moves, changes published."""
    with runtime.db.unit_of_work() as session:
        now = runtime.clock()
        outcome = rescoring.rescore_all(session, now)
        mark_swept(session, now)
    runtime.relay.notify()
    log.info(
        "rescored %d customers (%d changed) in %.2fs",
        outcome.customers,
        outcome.changed,
        outcome.seconds,
    )
    return outcome


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    runtime = create_runtime(settings)
    return build_app(
        runtime=runtime,
        title="CRM segment",
        description="RFM scores, lifecycle stages, value quadrants, purchase funnels, CLV "
        "summaries, predictive CLV (BG/NBD + Gamma-Gamma) and custom segments per customer, kept current from the order stream.",
        # /v1/reports/clv before the generic /v1/reports/{report}
        routers=[clv_routes.router, router],
    )
