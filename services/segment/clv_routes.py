"""Thin routes over the predictive CLV use cases (service.py): fits, predictions, report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.segment import clv_metrics, clv_runs, service
from services.segment.runtime import RuntimeDep
from services.segment.schemas import ClvFitRead, ClvReportRead, ClvRunRead, PredictionsRead
from shared.api import require
from shared.pagination import Page

router = APIRouter(prefix="/v1")
READ = [require("segment:read")]
WRITE = [require("segment:write")]

Currency = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


@router.post("/clv/fits", response_model=ClvRunRead, dependencies=WRITE, tags=["clv"])
def run_fits(runtime: RuntimeDep) -> ClvRunRead:
    """Fit BG/NBD and Gamma-Gamma per currency now, store every customer's predictions and
    re-evaluate the custom segments (as the scheduled run does)."""
    options = clv_runs.options_from(runtime.settings)
    with runtime.db.unit_of_work() as session:
        outcome, result = service.run_fits(session, runtime.clock(), options)
    clv_metrics.publish(outcome)
    runtime.relay.notify()
    return result


@router.get("/clv/fits", response_model=Page[ClvFitRead], dependencies=READ, tags=["clv"])
def list_fits(
    runtime: RuntimeDep,
    currency: Currency = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500, description="items per page")] = 50,
) -> Page[ClvFitRead]:
    """Every fit kept, newest first (parameters, data window, customers, log-likelihood,
    convergence), cursor paginated like every list."""
    with runtime.db.unit_of_work() as session:
        return service.fits_page(session, currency, cursor, limit)


@router.get("/clv/fits/{fit_id}", response_model=ClvFitRead, dependencies=READ, tags=["clv"])
def get_fit(fit_id: int, runtime: RuntimeDep) -> ClvFitRead:
    """One fit."""
    with runtime.db.unit_of_work() as session:
        return service.get_fit(session, fit_id)


@router.get(
    "/customers/{customer_id}/predictions",
    response_model=PredictionsRead,
    dependencies=READ,
    tags=["clv"],
)
def get_predictions(
    customer_id: str,
    runtime: RuntimeDep,
    as_of: Annotated[
        str | None,
        Query(
            description="compute from the orders known then: ISO 8601 with an offset, or a "
            "plain date = the end of that day in the policy timezone (as the scores' as_of)"
        ),
    ] = None,
) -> PredictionsRead:
    """A customer's p_alive, expected purchases, expected order value and predicted CLV."""
    with runtime.db.unit_of_work() as session:
        return service.predictions(session, customer_id, as_of, runtime.clock())


@router.get("/reports/clv", response_model=ClvReportRead, dependencies=READ, tags=["reports"])
def get_clv_report(
    runtime: RuntimeDep,
    holdout_from: Annotated[
        str | None,
        Query(
            description="start of the holdout period (calibration before), in the forms "
            "as_of takes; default: 90 days before holdout_to"
        ),
    ] = None,
    holdout_to: Annotated[
        str | None,
        Query(
            description="end of the holdout period, in the forms as_of takes; not after "
            "now (the data end there); default: now"
        ),
    ] = None,
    currency: Currency = None,
) -> ClvReportRead:
    """The latest fit's parameters, predicted vs actual purchases per calibration frequency
    over the holdout period, and the distribution of predicted CLV (one currency; default:
    the one with the most buyers)."""
    options = clv_runs.options_from(runtime.settings)
    with runtime.db.unit_of_work() as session:
        return service.clv_report_for(
            session, currency, holdout_from, holdout_to, runtime.clock(), options
        )
