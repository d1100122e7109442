from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.segment import (
    clv_metrics,
    clv_report,
    clv_runs,
    point_in_time,
    predictive,
    reads,
    scoring_context,
)
from services.segment.as_of import parse_as_of
from services.segment.clv_repository import ClvFits
from services.segment.config import Settings
from services.segment.models import ClvFit
from services.segment.money import from_e4
from services.segment.schemas import (
    ClvFitRead,
    ClvReportRead,
    ClvRunRead,
    PredictionsRead,
    RescoringRead,
)
from shared.api import require, runtime_of
from shared.errors import NotFound, ProblemError, ValidationProblem
from shared.events import ensure_aware
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1")
READ = [require("segment:read")]
WRITE = [require("segment:write")]

Currency = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


def _now(runtime: ServiceRuntime) -> datetime:
    now: datetime = runtime.extras["clock"]()
    return now


def _options(runtime: ServiceRuntime) -> predictive.ClvOptions:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return clv_runs.options_from(settings)


def fit_read(fit: ClvFit) -> ClvFitRead:
    body = clv_report.fit_body(fit)
    for name in ("as_of", "window_start", "fitted_at"):
        body[name] = ensure_aware(body[name]) if body[name] is not None else None
    return ClvFitRead.model_validate(body)


def predictions_read(view: predictive.CustomerPredictionView) -> PredictionsRead:
    """The API form of a customer's predictions (numbers only when ``ok``)."""
    fit = view.fit
    body: dict[str, Any] = {
        "status": view.status,
        "reason": view.reason,
        "currency": view.currency,
        "fit_id": fit.id if fit is not None else None,
    }
    if view.status == "ok":
        values = view.values
        body.update(
            as_of=view.as_of,
            p_alive=values["p_alive"],
            expected_purchases_30d=values["expected_purchases_30d"],
            expected_purchases_90d=values["expected_purchases_90d"],
            expected_purchases_365d=values["expected_purchases_365d"],
            expected_order_value=from_e4(values["expected_order_value_e4"], view.currency),
            predicted_clv=from_e4(values["predicted_clv_e4"], view.currency),
            predicted_clv_percentile=values["predicted_clv_percentile"],
            horizon_months=fit.horizon_months if fit else None,
            monthly_discount_rate=fit.monthly_discount_rate if fit else None,
        )
    return PredictionsRead.model_validate(body)


def customer_predictions(
    session: Any,
    customers: list[tuple[str, str | None]],
    as_of: datetime | None,
    timezone: str,
) -> dict[str, PredictionsRead]:
    """Stored predictions (now) or computed from the orders known at ``as_of``."""
    if as_of is None:
        views = predictive.stored_predictions(session, customers)
    else:
        views = predictive.predictions_as_of(session, [c for c, _ in customers], as_of, timezone)
    return {customer_id: predictions_read(view) for customer_id, view in views.items()}


@router.post("/clv/fits", response_model=ClvRunRead, dependencies=WRITE, tags=["clv"])
def run_fits(request: Request) -> ClvRunRead:
    """Fit BG/NBD and Gamma-Gamma per currency now, store every customer's predictions and
    re-evaluate the custom segments (as the scheduled run does)."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        outcome = clv_runs.run(session, _now(runtime), _options(runtime))
        result = ClvRunRead(
            fits=[fit_read(f) for f in outcome.fits],
            rescoring=RescoringRead(**outcome.rescoring.__dict__),
        )
    clv_metrics.publish(outcome)
    runtime.relay.notify()
    return result


@router.get("/clv/fits", response_model=Page[ClvFitRead], dependencies=READ, tags=["clv"])
def list_fits(
    request: Request,
    currency: Currency = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500, description="items per page")] = 50,
) -> Page[ClvFitRead]:
    """Every fit kept, newest first (parameters, data window, customers, log-likelihood,
    convergence), cursor paginated like every list."""
    position = decode_cursor(cursor)
    before = position.get("before") if position is not None else None
    if position is not None and not isinstance(before, int):
        raise ProblemError("the cursor is not one this API returned", slug="invalid-cursor")
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        fits = ClvFits(session).history(currency, limit + 1, before)
        items = [fit_read(f) for f in fits[:limit]]
    more = len(fits) > limit
    next_cursor = encode_cursor({"before": items[-1].fit_id}) if more else None
    return Page[ClvFitRead](items=items, next_cursor=next_cursor)


@router.get("/clv/fits/{fit_id}", response_model=ClvFitRead, dependencies=READ, tags=["clv"])
def get_fit(fit_id: int, request: Request) -> ClvFitRead:
    """One fit."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        fit = ClvFits(session).get(fit_id)
        if fit is None:
            raise NotFound(f"no CLV fit {fit_id}")
        return fit_read(fit)


@router.get(
    "/customers/{customer_id}/predictions",
    response_model=PredictionsRead,
    dependencies=READ,
    tags=["clv"],
)
def get_predictions(
    customer_id: str,
    request: Request,
    as_of: Annotated[
        str | None,
        Query(
            description="compute from the orders known then: ISO 8601 with an offset, or a "
            "plain date = the end of that day in the policy timezone (as the scores' as_of)"
        ),
    ] = None,
) -> PredictionsRead:
    """A customer's p_alive, expected purchases, expected order value and predicted CLV."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        reference = None
        if as_of is not None:
            reference = parse_as_of(as_of, scoring_context.current_policy(session)[1].timezone)
        if reference is None:
            views = reads.score_customers(session, [customer_id], None, _now(runtime))
        else:  # valid time, as the scores: the customer's orders as known then
            views = point_in_time.score_customers(session, [customer_id], reference.astimezone(UTC))
        if not views:
            survivor = reads.survivor_of(session, customer_id)
            if survivor is not None:
                raise NotFound("the customer was merged into survivor_id", survivor_id=survivor)
            raise NotFound("no such customer")
        _, policy, _ = scoring_context.current_policy(session)
        currency = views[0].row.get("currency") if views[0].row.get("order_count") else None
        found = customer_predictions(session, [(customer_id, currency)], reference, policy.timezone)
    return found[customer_id]


@router.get("/reports/clv", response_model=ClvReportRead, dependencies=READ, tags=["reports"])
def get_clv_report(
    request: Request,
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
    runtime = runtime_of(request)
    now = _now(runtime)
    with runtime.db.unit_of_work() as session:
        timezone = scoring_context.current_policy(session)[1].timezone
    end = parse_as_of(holdout_to, timezone, "holdout_to") or now
    if end > now:
        message = (
            f"holdout_to {end.isoformat()} lies beyond the data (now is {now.isoformat()}): "
            "no purchase after now can be checked"
        )
        raise ValidationProblem(
            message, errors=[{"field": "holdout_to", "code": "in_future", "message": message}]
        )
    start = parse_as_of(holdout_from, timezone, "holdout_from") or end - timedelta(days=90)
    if start >= end:
        message = "holdout_from must be before holdout_to"
        raise ValidationProblem(
            message, errors=[{"field": "holdout_from", "code": "not_before", "message": message}]
        )
    with runtime.db.unit_of_work() as session:
        _, policy, _ = scoring_context.current_policy(session)
        body = clv_report.build(session, currency, start, end, policy.timezone, _options(runtime))
        fit = ClvFits(session).get(body["fit"]["fit_id"]) if body["fit"] else None
        body["fit"] = fit_read(fit) if fit is not None else None
    return ClvReportRead.model_validate(body)
