"""Segment's use cases behind its API: scores and CLV summaries now or as of a time,
custom segments and their members, the scoring policy, reports and CLV fits. Each takes
the request's session and returns the API's schema; routes commit and publish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from services.segment import (
    clv_report,
    clv_runs,
    point_in_time,
    predictive,
    reads,
    reports,
    rescoring,
    scoring_context,
    segment_admin,
)
from services.segment.as_of import parse_as_of
from services.segment.clv import exact_monetary_value
from services.segment.clv_repository import ClvFits
from services.segment.context_repository import Segments
from services.segment.models import ClvFit
from services.segment.money import from_e4
from services.segment.policy import ScoringPolicy
from services.segment.predictive import customer_summaries
from services.segment.repository import Customers
from services.segment.schemas import (
    ClvFitRead,
    ClvReportRead,
    ClvRunRead,
    ClvSummaryRead,
    CustomerScoresRead,
    PolicyRead,
    PolicyWritten,
    PredictionsRead,
    ReportRead,
    RescoringRead,
    SegmentCreate,
    SegmentDeletedRead,
    SegmentMembersPage,
    SegmentRead,
    SegmentUpdate,
)
from services.segment.sweep import consistent_now
from shared.errors import Conflict, NotFound, ProblemError, ValidationProblem
from shared.events import ensure_aware
from shared.pagination import Page, decode_cursor, encode_cursor, page_of

ReportName = Literal["rfm", "lifecycle", "funnel", "quadrants", "regions"]


def _as_of(session: Any, value: str | None, parameter: str = "as_of") -> datetime | None:
    """The instant asked for (services/segment/as_of.py), plain dates in the policy timezone."""
    if value is None:
        return None
    _, policy, _ = scoring_context.current_policy(session)
    return parse_as_of(value, policy.timezone, parameter)


def _score(
    session: Any, customer_ids: list[str], as_of: datetime | None, now: datetime
) -> list[reads.CustomerView]:
    """Now: as stored (the state published); as of a time: in valid time (point_in_time.py)."""
    if as_of is None:
        return reads.current_scores(session, customer_ids, now)
    return point_in_time.score_customers(session, customer_ids, as_of.astimezone(UTC))


def with_predictions(
    session: Any, views: list[reads.CustomerView], as_of: datetime | None
) -> list[CustomerScoresRead]:
    """The scores reads with each customer's predictive CLV."""
    customers = [
        (v.row["customer_id"], v.row.get("currency") if v.row.get("order_count") else None)
        for v in views
    ]
    found = customer_predictions(session, customers, as_of)
    answers = [scores_read(v) for v in views]
    for answer in answers:
        answer.predictions = found.get(answer.customer_id)
    return answers


def scores_read(view: reads.CustomerView) -> CustomerScoresRead:
    row = view.row
    count = int(row["order_count"] or 0)
    total = int(row["total_spent_e4"] or 0)
    currency = row.get("currency")
    return CustomerScoresRead(
        customer_id=row["customer_id"],
        recency_days=row.get("recency_days"),
        frequency=int(row["frequency"] or 0),
        monetary=from_e4(int(row["monetary_e4"] or 0), currency),
        currency=currency,
        r_score=row.get("r_score"),
        f_score=row.get("f_score"),
        m_score=row.get("m_score"),
        rfm_code=row.get("rfm_code"),
        rfm_segment=row.get("rfm_segment"),
        lifecycle_stage=row["lifecycle_stage"],
        purchase_bucket=row.get("purchase_bucket"),
        funnel_bucket=row.get("funnel_bucket"),
        value_quadrant=row.get("value_quadrant"),
        first_order_at=row.get("first_order_at"),
        last_order_at=row.get("last_order_at"),
        order_count=count,
        total_spent=from_e4(total, currency),
        average_order_value=from_e4(total // count, currency) if count else None,
        channels=list(row.get("channels") or []),
        categories=list(row.get("categories") or []),
        province=row.get("province"),
        city=row.get("city"),
        segments=row.get("segments") or [],
        policy_version=view.policy_version,
        as_of=view.as_of,
    )


def _unknown_customer(session: Any, customer_id: str) -> NotFound:
    survivor = reads.survivor_of(session, customer_id)
    if survivor is not None:
        return NotFound("the customer was merged into survivor_id", survivor_id=survivor)
    return NotFound("no such customer")


def customer_scores(
    session: Session, customer_id: str, as_of: str | None, now: datetime
) -> CustomerScoresRead:
    """One customer's scores now or as of a time; 404 (naming the survivor of a merge)."""
    moment = _as_of(session, as_of)
    views = _score(session, [customer_id], moment, now)
    if not views:
        raise _unknown_customer(session, customer_id)
    return with_predictions(session, views, moment)[0]


def scores_page(
    session: Session, as_of: str | None, cursor: str | None, limit: int, now: datetime
) -> Page[CustomerScoresRead]:
    """Every customer's scores as of a time, ordered by customer id (cursor paginated)."""
    position = decode_cursor(cursor) or {}
    ids = Customers(session).ids_page(position.get("after"), limit)
    moment = _as_of(session, as_of)
    views = _score(session, ids, moment, now)
    items = with_predictions(session, views, moment)
    next_cursor = encode_cursor({"after": ids[-1]}) if len(ids) == limit else None
    return Page(items=items, next_cursor=next_cursor)


def _clv_reference(session: Any, value: str | None, now: datetime) -> tuple[datetime, int, str]:
    """The instant (UTC), policy version and timezone a CLV summary read uses: with
    ``as_of``, the policy in force then (as the scores); without, the current one at the
    time the scores reads use (``consistent_now``)."""
    moment = _as_of(session, value)
    if moment is None:
        version, policy, _ = scoring_context.current_policy(session)
        return consistent_now(session, now).astimezone(UTC), version, policy.timezone
    moment = moment.astimezone(UTC)
    version, policy = point_in_time.policy_at(session, moment)
    return moment, version, policy.timezone


def _clv_rows(
    session: Any, customer_ids: list[str], as_of: datetime, version: int, timezone: str
) -> list[ClvSummaryRead]:
    orders = point_in_time.purchases_at(session, customer_ids, as_of.astimezone(UTC))
    purchases = orders[orders["valid"] & (orders["created_at"] <= as_of)]
    # per currency like the fit: the purchases in the customer's latest purchase's currency
    summary = customer_summaries(purchases, as_of, timezone)
    return [
        ClvSummaryRead(
            customer_id=str(customer_id),
            frequency=int(row["frequency"]),
            recency=int(row["recency"]),
            T=int(row["T"]),
            monetary_value=exact_monetary_value(int(row["repeat_total_e4"]), int(row["frequency"])),
            currency=row["currency"],
            as_of=as_of,
            policy_version=version,
        )
        for customer_id, row in summary.iterrows()
    ]


def clv_summary(
    session: Session, customer_id: str, as_of: str | None, now: datetime
) -> ClvSummaryRead:
    """One customer's lifetimes-compatible CLV summary; 404 if it is not known."""
    reference, version, timezone = _clv_reference(session, as_of, now)
    rows = _clv_rows(session, [customer_id], reference, version, timezone)
    if not rows:
        raise _unknown_customer(session, customer_id)
    return rows[0]


def clv_summaries_page(
    session: Session, as_of: str | None, cursor: str | None, limit: int, now: datetime
) -> Page[ClvSummaryRead]:
    """CLV summaries of the customers with a purchase (cursor paginated)."""
    position = decode_cursor(cursor) or {}
    reference, version, timezone = _clv_reference(session, as_of, now)
    ids = Customers(session).ids_page(position.get("after"), limit)
    rows = _clv_rows(session, ids, reference, version, timezone)
    next_cursor = encode_cursor({"after": ids[-1]}) if len(ids) == limit else None
    return Page(items=rows, next_cursor=next_cursor)


def rescoring_read(outcome: rescoring.RescoringOutcome) -> RescoringRead:
    return RescoringRead(**outcome.__dict__)


def policy_read(session: Session) -> PolicyRead:
    """The scoring policy in force and its version."""
    version, policy, created_at = scoring_context.current_policy(session)
    return PolicyRead(version=version, created_at=created_at, policy=policy)


def put_policy(session: Session, policy: ScoringPolicy, now: datetime) -> PolicyWritten:
    """A new policy version and everyone rescored; the policy in force again changes nothing."""
    in_force, current, _ = scoring_context.current_policy(session)
    if policy == current:
        return PolicyWritten(version=in_force, created=False, rescoring=None)
    version, window_changed = scoring_context.set_policy(session, policy, comment=None)
    outcome = rescoring.rescore_all(session, now, reaggregate=window_changed)
    return PolicyWritten(version=version, created=True, rescoring=rescoring_read(outcome))


def policy_versions(session: Session, cursor: str | None, limit: int) -> Page[PolicyRead]:
    """Every version of the scoring policy, oldest first (cursor paginated)."""
    versions = [
        PolicyRead(
            version=p.version,
            created_at=scoring_context.policy_created_at(p),
            policy=ScoringPolicy.model_validate(p.policy),
        )
        for p in scoring_context.policy_history(session)
    ]
    return page_of(versions, lambda v: v.version, cursor, limit)


def recompute(session: Session, now: datetime) -> RescoringRead:
    """New cut points over everyone now, everyone rescored, the changes in the outbox."""
    return rescoring_read(rescoring.rescore_all(session, now))


def cut_points(session: Session, now: datetime) -> dict[str, Any]:
    """The cut points applied to each event until the next batch rescoring."""
    return scoring_context.load_context(session, now).cut_points.to_json()


def segment_read(segment: Any) -> SegmentRead:
    return SegmentRead(
        segment_id=segment.segment_id,
        name=segment.name,
        description=segment.description,
        rule=segment.rule,
        member_count=segment.member_count,
        created_at=ensure_aware(segment.created_at),
    )


def segments_page(session: Session, cursor: str | None, limit: int) -> Page[SegmentRead]:
    """Every custom segment with its rule and member count, by id (cursor paginated)."""
    segments = [segment_read(s) for s in Segments(session).all()]
    return page_of(segments, lambda s: s.segment_id, cursor, limit)


def create_segment(
    session: Session, segment_id: str, body: SegmentCreate, now: datetime
) -> SegmentRead:
    """A custom segment defined by a rule, its members computed now; 409 if the id is
    taken (or a concurrent create took it first: the IntegrityError at the route's commit)."""
    if Segments(session).get(segment_id) is not None:
        raise Conflict(f"segment {segment_id} exists")
    segment_admin.refuse_a_deleted_id(session, segment_id)
    segment_admin.create_segment(session, segment_id, body.name, body.description, body.rule)
    rescoring.rescore_all(session, now, recompute=False)
    segment = Segments(session).get(segment_id)
    assert segment is not None
    session.refresh(segment)
    return segment_read(segment)


def get_segment(session: Session, segment_id: str) -> SegmentRead:
    """One custom segment; 404 if unknown."""
    segment = Segments(session).get(segment_id)
    if segment is None:
        raise NotFound(f"no segment {segment_id}")
    return segment_read(segment)


def update_segment(
    session: Session, segment_id: str, body: SegmentUpdate, now: datetime
) -> SegmentRead:
    """Rename or re-describe a segment; a new rule re-evaluates its members."""
    return segment_read(segment_admin.update_segment(session, segment_id, body, now))


def delete_segment(session: Session, segment_id: str, now: datetime) -> SegmentDeletedRead:
    """Delete a segment: its members leave, segment.deleted goes in the outbox."""
    deleted = segment_admin.delete_segment(session, segment_id, now)
    return SegmentDeletedRead(**deleted.model_dump())


def members_page(
    session: Session,
    segment_id: str,
    as_of: str | None,
    cursor: str | None,
    limit: int,
    now: datetime,
) -> SegmentMembersPage:
    """The customer ids in a segment (as of a time: its members then), cursor paginated."""
    position = decode_cursor(cursor) or {}
    after = position.get("after")
    repo = Segments(session)
    if repo.get(segment_id) is None:
        raise NotFound(f"no segment {segment_id}")
    moment = _as_of(session, as_of)
    if moment is None:  # the stored members: the current policy, as the scores reads
        ids = repo.members_page(segment_id, after, limit)
        version = scoring_context.current_policy(session)[0]
        moment = consistent_now(session, now)
    else:
        members, context = point_in_time.members_at(session, segment_id, moment)
        ids = [c for c in members if after is None or c > after][:limit]
        version = context.policy_version
    next_cursor = encode_cursor({"after": ids[-1]}) if len(ids) == limit else None
    return SegmentMembersPage(
        items=ids, next_cursor=next_cursor, as_of=moment.astimezone(UTC), policy_version=version
    )


def _report_scores(
    session: Any, as_of: datetime | None, now: datetime
) -> tuple[Any, scoring_context.ScoringContext]:
    if as_of is None:
        return reads.all_scores(session, None, consistent_now(session, now))
    scores, _, context = point_in_time.scores_at(session, as_of.astimezone(UTC))
    return scores, context


def report(
    session: Session,
    name: ReportName,
    as_of: str | None,
    since: str | None,
    level: Literal["province", "city"],
    now: datetime,
) -> ReportRead:
    """One report over everyone's scores now or as of a time (see the route)."""
    now = consistent_now(session, now)
    moment, since_moment = _as_of(session, as_of), _as_of(session, since, "since")
    scores, context = _report_scores(session, moment, now)
    before = _report_scores(session, since_moment, now)[0] if since_moment else None
    rows: list[dict[str, Any]]
    if name == "rfm":
        rows = [{"grid": reports.rfm_grid(scores), "segments": reports.rfm_segments(scores)}]
    elif name == "lifecycle":
        rows = reports.lifecycle_distribution(scores)
        if before is not None:
            rows = [
                {"distribution": rows, "transitions": reports.lifecycle_transitions(before, scores)}
            ]
    elif name == "funnel":
        rows = reports.funnel(scores, context.policy)
    elif name == "quadrants":
        rows = reports.quadrants(scores)
    else:
        rows = reports.regions(scores, level)
    return ReportRead(
        report=name, as_of=moment or now, policy_version=context.policy_version, rows=rows
    )


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
) -> dict[str, PredictionsRead]:
    """Stored predictions (now) or computed from the orders known at ``as_of`` (with the
    timezone of the policy in force: the stored ones need no policy, every read asks)."""
    if as_of is None:
        views = predictive.stored_predictions(session, customers)
    else:
        _, policy, _ = scoring_context.current_policy(session)
        ids = [c for c, _ in customers]
        views = predictive.predictions_as_of(session, ids, as_of, policy.timezone)
    return {customer_id: predictions_read(view) for customer_id, view in views.items()}


def run_fits(
    session: Session, now: datetime, options: predictive.ClvOptions
) -> tuple[clv_runs.ClvRun, ClvRunRead]:
    """Fit per currency now, store the predictions, re-evaluate the custom segments."""
    outcome = clv_runs.run(session, now, options)
    read = ClvRunRead(
        fits=[fit_read(f) for f in outcome.fits],
        rescoring=RescoringRead(**outcome.rescoring.__dict__),
    )
    return outcome, read


def fits_page(
    session: Session, currency: str | None, cursor: str | None, limit: int
) -> Page[ClvFitRead]:
    """Every fit kept, newest first, cursor paginated."""
    position = decode_cursor(cursor)
    before = position.get("before") if position is not None else None
    if position is not None and not isinstance(before, int):
        raise ProblemError("the cursor is not one this API returned", slug="invalid-cursor")
    fits = ClvFits(session).history(currency, limit + 1, before)
    items = [fit_read(f) for f in fits[:limit]]
    more = len(fits) > limit
    next_cursor = encode_cursor({"before": items[-1].fit_id}) if more else None
    return Page[ClvFitRead](items=items, next_cursor=next_cursor)


def get_fit(session: Session, fit_id: int) -> ClvFitRead:
    """One fit; 404 if unknown."""
    fit = ClvFits(session).get(fit_id)
    if fit is None:
        raise NotFound(f"no CLV fit {fit_id}")
    return fit_read(fit)


def predictions(
    session: Session, customer_id: str, as_of: str | None, now: datetime
) -> PredictionsRead:
    """A customer's predictions now (stored) or computed from the orders known at ``as_of``."""
    reference = None
    if as_of is not None:
        reference = parse_as_of(as_of, scoring_context.current_policy(session)[1].timezone)
    if reference is None:
        views = reads.score_customers(session, [customer_id], None, now)
    else:  # valid time, as the scores: the customer's orders as known then
        views = point_in_time.score_customers(session, [customer_id], reference.astimezone(UTC))
    if not views:
        raise _unknown_customer(session, customer_id)
    currency = views[0].row.get("currency") if views[0].row.get("order_count") else None
    found = customer_predictions(session, [(customer_id, currency)], reference)
    return found[customer_id]


def policy_timezone(session: Session) -> str:
    """The timezone of the scoring policy in force (plain dates are read in it)."""
    return scoring_context.current_policy(session)[1].timezone


def holdout_period(
    timezone: str, holdout_from: str | None, holdout_to: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """The CLV report's holdout period: 422 if it ends after now or starts after its end."""
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
    return start, end


def clv_report_for(
    session: Session,
    currency: str | None,
    holdout_from: str | None,
    holdout_to: str | None,
    now: datetime,
    options: predictive.ClvOptions,
) -> ClvReportRead:
    """``GET /v1/reports/clv``: the holdout period read in the policy's timezone (422 if it
    is not a period before now), then the report over it."""
    start, end = holdout_period(policy_timezone(session), holdout_from, holdout_to, now)
    return clv_report_read(session, currency, start, end, options)


def clv_report_read(
    session: Session,
    currency: str | None,
    start: datetime,
    end: datetime,
    options: predictive.ClvOptions,
) -> ClvReportRead:
    """The latest fit, predicted vs actual purchases over the holdout, the CLV distribution."""
    _, policy, _ = scoring_context.current_policy(session)
    body = clv_report.build(session, currency, start, end, policy.timezone, options)
    fit = ClvFits(session).get(body["fit"]["fit_id"]) if body["fit"] else None
    body["fit"] = fit_read(fit) if fit is not None else None
    return ClvReportRead.model_validate(body)
