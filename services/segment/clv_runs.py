"""The predictive CLV run: fit every currency, then re-evaluate the custom segments.

Called by the scheduled job (``SEGMENT_CLV_FIT_INTERVAL_SECONDS``) and on demand
(``POST /v1/clv/fits``); one unit of work (flush, never commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from services.segment import predictive, rescoring, scoring_context
from services.segment.config import Settings
from services.segment.models import ClvFit


def options_from(settings: Settings) -> predictive.ClvOptions:
    return predictive.ClvOptions(
        min_customers=settings.clv_min_customers,
        min_repeat_customers=settings.clv_min_repeat_customers,
        min_history_days=settings.clv_min_history_days,
        horizon_months=settings.clv_horizon_months,
        monthly_discount_rate=settings.clv_monthly_discount_rate,
    )


@dataclass
class ClvRun:
    fits: list[ClvFit]
    rescoring: rescoring.RescoringOutcome
    #: per currency with published numbers: customers_predicted, predicted_clv_total,
    #: p_alive_mean, expected_purchases_90d_total (clv_metrics.publish)
    figures: dict[str, dict[str, float]]


def run(session: Session, now: datetime, options: predictive.ClvOptions) -> ClvRun:
    """New fits and predictions as of ``now``; segments reading predictions are re-evaluated
    (the rescoring publishes the customers whose memberships changed)."""
    _, policy, _ = scoring_context.current_policy(session)
    fitted = predictive.run_fits(session, now, policy.timezone, options)
    outcome = rescoring.rescore_all(session, now, recompute=False)
    return ClvRun(fitted.fits, outcome, fitted.figures)
