from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.exc import IntegrityError

from services.segment import (
    clv_routes,
    point_in_time,
    reads,
    reports,
    rescoring,
    scoring_context,
    segment_admin,
)
from services.segment.as_of import parse_as_of
from services.segment.clv import exact_monetary_value
from services.segment.money import from_e4
from services.segment.policy import ScoringPolicy
from services.segment.predictive import customer_summaries
from services.segment.repository import Customers, Segments
from services.segment.schemas import (
    ClvSummaryRead,
    CustomerScoresRead,
    PolicyRead,
    PolicyWritten,
    ReportRead,
    RescoringRead,
    SegmentCreate,
    SegmentDeletedRead,
    SegmentMembersPage,
    SegmentRead,
    SegmentUpdate,
)
from services.segment.sweep import consistent_now
from shared.api import require, runtime_of
from shared.errors import Conflict, NotFound
from shared.events import ensure_aware
from shared.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ListLimit,
    Page,
    decode_cursor,
    encode_cursor,
    page_of,
)
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1")
READ = [require("segment:read")]
WRITE = [require("segment:write")]

AsOf = Annotated[
    str | None,
    Query(
        description="reference time: ISO 8601 with an offset (encode '+' as %2B; an unencoded "
        "'+' read as a space is accepted), or a plain date = the end of that day in the policy "
        "timezone; default: now",
        examples=["2026-11-30", "2026-11-30T18:00:00+08:00"],
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _now(runtime: ServiceRuntime) -> datetime:
    now: datetime = runtime.extras["clock"]()
    return now


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
    """The scores reads with each customer's predictive CLV (clv_routes)."""
    _, policy, _ = scoring_context.current_policy(session)
    customers = [
        (v.row["customer_id"], v.row.get("currency") if v.row.get("order_count") else None)
        for v in views
    ]
    found = clv_routes.customer_predictions(session, customers, as_of, policy.timezone)
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


# --------------------------------------------------------------------------- scores


@router.get(
    "/customers/{customer_id}/scores",
    response_model=CustomerScoresRead,
    dependencies=READ,
    tags=["scores"],
)
def get_customer_scores(
    customer_id: str, request: Request, as_of: AsOf = None
) -> CustomerScoresRead:
    """One customer's RFM scores, segment, lifecycle, buckets and quadrant as of a time."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        moment = _as_of(session, as_of)
        views = _score(session, [customer_id], moment, _now(runtime))
        if not views:
            raise _unknown_customer(session, customer_id)
        return with_predictions(session, views, moment)[0]


@router.get("/scores", response_model=Page[CustomerScoresRead], dependencies=READ, tags=["scores"])
def list_scores(
    request: Request, as_of: AsOf = None, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[CustomerScoresRead]:
    """Every customer's scores as of a time, ordered by customer id (cursor paginated)."""
    runtime = runtime_of(request)
    position = decode_cursor(cursor) or {}
    with runtime.db.unit_of_work() as session:
        ids = Customers(session).ids_page(position.get("after"), limit)
        moment = _as_of(session, as_of)
        views = _score(session, ids, moment, _now(runtime))
        items = with_predictions(session, views, moment)
    next_cursor = encode_cursor({"after": ids[-1]}) if len(ids) == limit else None
    return Page(items=items, next_cursor=next_cursor)


# --------------------------------------------------------------------------- CLV


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


@router.get(
    "/customers/{customer_id}/clv-summary",
    response_model=ClvSummaryRead,
    dependencies=READ,
    tags=["clv"],
)
def get_clv_summary(customer_id: str, request: Request, as_of: AsOf = None) -> ClvSummaryRead:
    """lifetimes-compatible frequency, recency, T and monetary_value (daily periods)."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        reference, version, timezone = _clv_reference(session, as_of, _now(runtime))
        rows = _clv_rows(session, [customer_id], reference, version, timezone)
        if not rows:
            raise _unknown_customer(session, customer_id)
    return rows[0]


@router.get("/clv-summary", response_model=Page[ClvSummaryRead], dependencies=READ, tags=["clv"])
def list_clv_summaries(
    request: Request, as_of: AsOf = None, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[ClvSummaryRead]:
    """CLV summaries of every customer with a purchase (cursor paginated), for BG/NBD and Gamma-Gamma."""
    runtime = runtime_of(request)
    position = decode_cursor(cursor) or {}
    with runtime.db.unit_of_work() as session:
        reference, version, timezone = _clv_reference(session, as_of, _now(runtime))
        ids = Customers(session).ids_page(position.get("after"), limit)
        rows = _clv_rows(session, ids, reference, version, timezone)
    next_cursor = encode_cursor({"after": ids[-1]}) if len(ids) == limit else None
    return Page(items=rows, next_cursor=next_cursor)


# --------------------------------------------------------------------------- policy


def _rescoring_read(outcome: rescoring.RescoringOutcome) -> RescoringRead:
    return RescoringRead(**outcome.__dict__)


@router.get("/scoring-policy", response_model=PolicyRead, dependencies=READ, tags=["policy"])
def get_policy(request: Request) -> PolicyRead:
    """The scoring policy in force and its version."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        version, policy, created_at = scoring_context.current_policy(session)
    return PolicyRead(version=version, created_at=created_at, policy=policy)


@router.put("/scoring-policy", response_model=PolicyWritten, dependencies=WRITE, tags=["policy"])
def put_policy(policy: ScoringPolicy, request: Request) -> PolicyWritten:
    """Replace the scoring policy (a new version; every version is kept) and rescore everyone.
    The same policy as the one in force changes nothing: its version, `created: false`, no
    rescoring."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        in_force, current, _ = scoring_context.current_policy(session)
        if policy == current:
            return PolicyWritten(version=in_force, created=False, rescoring=None)
        version, window_changed = scoring_context.set_policy(session, policy, comment=None)
        outcome = rescoring.rescore_all(session, _now(runtime), reaggregate=window_changed)
    runtime.relay.notify()
    return PolicyWritten(version=version, created=True, rescoring=_rescoring_read(outcome))


@router.get(
    "/scoring-policy/versions", response_model=Page[PolicyRead], dependencies=READ, tags=["policy"]
)
def list_policy_versions(
    request: Request, cursor: str | None = None, limit: ListLimit = DEFAULT_LIMIT
) -> Page[PolicyRead]:
    """Every version of the scoring policy, oldest first (cursor paginated)."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        history = scoring_context.policy_history(session)
        versions = [
            PolicyRead(
                version=p.version,
                created_at=scoring_context.policy_created_at(p),
                policy=ScoringPolicy.model_validate(p.policy),
            )
            for p in history
        ]
    return page_of(versions, lambda v: v.version, cursor, limit)


@router.post(
    "/scoring/recompute", response_model=RescoringRead, dependencies=WRITE, tags=["policy"]
)
def recompute(request: Request) -> RescoringRead:
    """Recompute the cut points over everyone now, rescore everyone and publish the changes."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        outcome = rescoring.rescore_all(session, _now(runtime))
    runtime.relay.notify()
    return _rescoring_read(outcome)


@router.get("/scoring/cut-points", dependencies=READ, tags=["policy"])
def get_cut_points(request: Request) -> dict[str, Any]:
    """The cut points applied to each event until the next batch rescoring."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        context = scoring_context.load_context(session, _now(runtime))
    return context.cut_points.to_json()


# --------------------------------------------------------------------------- segments


def _segment_read(segment: Any) -> SegmentRead:
    return SegmentRead(
        segment_id=segment.segment_id,
        name=segment.name,
        description=segment.description,
        rule=segment.rule,
        member_count=segment.member_count,
        created_at=ensure_aware(segment.created_at),
    )


@router.get("/segments", response_model=Page[SegmentRead], dependencies=READ, tags=["segments"])
def list_segments(
    request: Request, cursor: str | None = None, limit: ListLimit = DEFAULT_LIMIT
) -> Page[SegmentRead]:
    """Every custom segment with its rule and current member count, by id (cursor paginated)."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        segments = [_segment_read(s) for s in Segments(session).all()]
    return page_of(segments, lambda s: s.segment_id, cursor, limit)


@router.post(
    "/segments", response_model=SegmentRead, status_code=201, dependencies=WRITE, tags=["segments"]
)
def create_segment(body: SegmentCreate, request: Request) -> SegmentRead:
    """Define a custom segment by a rule; members are computed now and kept current by events."""
    runtime = runtime_of(request)
    segment_id = body.segment_id or str(uuid.uuid4())
    try:
        with runtime.db.unit_of_work() as session:
            if Segments(session).get(segment_id) is not None:
                raise Conflict(f"segment {segment_id} exists")
            segment_admin.refuse_a_deleted_id(session, segment_id)
            segment_admin.create_segment(
                session, segment_id, body.name, body.description, body.rule
            )
            rescoring.rescore_all(session, _now(runtime), recompute=False)
            segment = Segments(session).get(segment_id)
            assert segment is not None
            session.refresh(segment)
            result = _segment_read(segment)
    except IntegrityError as exc:
        raise Conflict(f"segment {segment_id} exists") from exc
    runtime.relay.notify()
    return result


@router.get(
    "/segments/{segment_id}", response_model=SegmentRead, dependencies=READ, tags=["segments"]
)
def get_segment(segment_id: str, request: Request) -> SegmentRead:
    """One custom segment."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        segment = Segments(session).get(segment_id)
        if segment is None:
            raise NotFound(f"no segment {segment_id}")
        return _segment_read(segment)


@router.patch(
    "/segments/{segment_id}", response_model=SegmentRead, dependencies=WRITE, tags=["segments"]
)
def update_segment(segment_id: str, body: SegmentUpdate, request: Request) -> SegmentRead:
    """Rename or re-describe a segment; a new rule re-evaluates members and publishes changes."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        result = _segment_read(
            segment_admin.update_segment(session, segment_id, body, _now(runtime))
        )
    runtime.relay.notify()
    return result


@router.delete(
    "/segments/{segment_id}",
    response_model=SegmentDeletedRead,
    dependencies=WRITE,
    tags=["segments"],
)
def delete_segment(segment_id: str, request: Request) -> SegmentDeletedRead:
    """Delete a segment: members leave (segment.changed), segment.deleted tells campaign."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        deleted = segment_admin.delete_segment(session, segment_id, _now(runtime))
    runtime.relay.notify()
    return SegmentDeletedRead(**deleted.model_dump())


@router.get(
    "/segments/{segment_id}/members",
    response_model=SegmentMembersPage,
    dependencies=READ,
    tags=["segments"],
)
def list_members(
    segment_id: str,
    request: Request,
    as_of: AsOf = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> SegmentMembersPage:
    """The customer ids in a segment (as of a time: its members then), ordered (cursor paginated)."""
    runtime = runtime_of(request)
    position = decode_cursor(cursor) or {}
    after = position.get("after")
    with runtime.db.unit_of_work() as session:
        repo = Segments(session)
        if repo.get(segment_id) is None:
            raise NotFound(f"no segment {segment_id}")
        moment = _as_of(session, as_of)
        if moment is None:  # the stored members: the current policy, as the scores reads
            ids = repo.members_page(segment_id, after, limit)
            version = scoring_context.current_policy(session)[0]
            moment = consistent_now(session, _now(runtime))
        else:
            members, context = point_in_time.members_at(session, segment_id, moment)
            ids = [c for c in members if after is None or c > after][:limit]
            version = context.policy_version
    next_cursor = encode_cursor({"after": ids[-1]}) if len(ids) == limit else None
    return SegmentMembersPage(
        items=ids, next_cursor=next_cursor, as_of=moment.astimezone(UTC), policy_version=version
    )


# --------------------------------------------------------------------------- reports


def _report_scores(
    session: Any, as_of: datetime | None, now: datetime
) -> tuple[Any, scoring_context.ScoringContext]:
    if as_of is None:
        return reads.all_scores(session, None, consistent_now(session, now))
    scores, _, context = point_in_time.scores_at(session, as_of.astimezone(UTC))
    return scores, context


ReportName = Literal["rfm", "lifecycle", "funnel", "quadrants", "regions"]


@router.get("/reports/{report}", response_model=ReportRead, dependencies=READ, tags=["reports"])
def get_report(
    report: ReportName,
    request: Request,
    as_of: AsOf = None,
    since: Annotated[
        str | None,
        Query(description="lifecycle: also the transition matrix since then (as as_of)"),
    ] = None,
    level: Literal["province", "city"] = "province",
) -> ReportRead:
    """rfm: R x F cells and named segments; lifecycle: stages (and transitions since ``since``);
    funnel: 1, 2, 3-4, 5+ buyers with revenue and AOV; quadrants; regions: by province or city."""
    runtime = runtime_of(request)
    with runtime.db.unit_of_work() as session:
        now = consistent_now(session, _now(runtime))
        moment, since_moment = _as_of(session, as_of), _as_of(session, since, "since")
        scores, context = _report_scores(session, moment, now)
        before = _report_scores(session, since_moment, now)[0] if since_moment else None
    rows: list[dict[str, Any]]
    if report == "rfm":
        rows = [{"grid": reports.rfm_grid(scores), "segments": reports.rfm_segments(scores)}]
    elif report == "lifecycle":
        rows = reports.lifecycle_distribution(scores)
        if before is not None:
            rows = [
                {"distribution": rows, "transitions": reports.lifecycle_transitions(before, scores)}
            ]
    elif report == "funnel":
        rows = reports.funnel(scores, context.policy)
    elif report == "quadrants":
        rows = reports.quadrants(scores)
    else:
        rows = reports.regions(scores, level)
    return ReportRead(
        report=report, as_of=moment or now, policy_version=context.policy_version, rows=rows
    )
