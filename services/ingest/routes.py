"""Thin HTTP endpoints: parse, call the service in one unit of work, answer."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from starlette.responses import Response

from services.ingest import imports, intake_stats, order_history, replay, service
from services.ingest.committer import store_batches
from services.ingest.runtime import IngestRuntime, RuntimeDep
from services.ingest.schemas import (
    BatchResult,
    CustomerAccepted,
    ImportJobRead,
    InteractionAccepted,
    OrderAccepted,
    OrderHistoryRead,
    ReplayRequest,
    ReplayResult,
)
from services.ingest.validation import parse_json
from shared.api import require, runtime_of
from shared.errors import Conflict, NotFound, PayloadTooLarge, ValidationProblem
from shared.strict_input import duplicate_key_problem, first_duplicate_key

router = APIRouter(prefix="/v1")


async def json_body(request: Request) -> Any:
    """The request body parsed as JSON (lone surrogates reach validation, which rejects them);
    a duplicate key is a 422 ``duplicate-key`` (``shared.strict_input``)."""
    body = await request.body()
    try:
        parsed = parse_json(body)
    except ValueError as exc:
        raise ValidationProblem(
            f"the body is not valid JSON (UTF-8): {type(exc).__name__}",
            slug="malformed-json",
            title="The body is not JSON",
        ) from exc
    duplicate = first_duplicate_key(body, parsed)
    if duplicate is not None:
        raise duplicate_key_problem(duplicate)
    return parsed


Body = Annotated[Any, Depends(json_body)]


def _body_of(schema: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


def _accept(runtime: IngestRuntime, kind: str, records: list[Any], source: str) -> list[Any]:
    prepared = service.prepare(kind, records, source=source, rules=runtime.rules)
    (results,) = store_batches(runtime, [prepared])
    if any(r.event_id for r in results):
        runtime.relay.notify()
    return results


async def _single(request: Request, kind: str, id_field: str) -> Response:
    # async on purpose: the group committer's thread does the blocking work, so a single
    # record costs no thread-pool hop of its own (see committer.py); the body is read
    # here rather than by a dependency, and the answer is serialised once, with orjson
    body = await json_body(request)
    committer = runtime_of(request, IngestRuntime).committer
    result = await committer.submit(kind, body, "rest")
    if result.status == "rejected" and result.reasons == [service.VERSION_CONFLICT]:
        raise Conflict(
            "this order version is stored with different content",
            slug="version-conflict",
            title="Version conflict",
            errors=[r.as_dict() for r in result.reasons],
        )
    if result.status == "rejected":
        raise ValidationProblem(
            f"the {kind} was rejected: {len(result.reasons)} problem(s)",
            errors=[r.as_dict() for r in result.reasons],
        )
    return Response(
        orjson.dumps(
            {
                "status": result.status,
                "event_id": result.event_id,
                "sequence": result.sequence,
                "current": result.current,
                id_field: result.id,
                "warnings": result.warnings,
            }
        ),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
    )


def _batch(runtime: IngestRuntime, kind: str, plural: str, body: Any) -> Response:
    records = body.get(plural) if isinstance(body, dict) else body
    if not isinstance(records, list):
        raise ValidationProblem(f'send {{"{plural}": [...]}} (or a JSON array)')
    limit = runtime.settings.max_batch_size
    if len(records) > limit:
        raise PayloadTooLarge(
            f"a batch holds at most {limit} records; this one has {len(records)}",
            max_records=limit,
        )
    results = _accept(runtime, kind, records, "rest")
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    items = []
    for r in results:
        counts[r.status] += 1
        items.append(
            {
                "index": r.index,
                "id": r.id,
                "status": r.status,
                "event_id": r.event_id,
                "current": r.current,
                "reasons": r.reasons,
                "warnings": r.warnings,
            }
        )
    # serialised once, directly (the shape is BatchResult; orjson writes the Reason
    # dataclasses as {field, code, message}): 5,000 results through pydantic again would
    # cost more than storing them
    return Response(orjson.dumps({**counts, "results": items}), media_type="application/json")


# one record (202, stored before answering) and a batch (200, a result per record) per kind:
# (kind, plural, id field, single response model, single doc, batch doc)
_RECORD_ROUTES: list[tuple[str, str, str, type[Any], str, str]] = [
    (
        "order",
        "orders",
        "order_id",
        OrderAccepted,
        "Accept one order (its latest state): validated, stored before the 202, relayed to Kafka.",
        "Accept up to 5,000 orders in one transaction; a result per order (bad ones never block).",
    ),
    (
        "customer",
        "customers",
        "customer_id",
        CustomerAccepted,
        "Accept one customer record: validated, stored, relayed to crm.customers.v1.",
        "Accept up to 5,000 customer records; a result per record.",
    ),
    (
        "interaction",
        "interactions",
        "interaction_id",
        InteractionAccepted,
        "Accept one typed interaction (review, ticket, return, complaint, dispute, response).",
        "Accept up to 5,000 interactions; a result per record.",
    ),
]


def _single_endpoint(kind: str, id_field: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await _single(request, kind, id_field)

    return endpoint


def _batch_endpoint(kind: str, plural: str) -> Any:
    def endpoint(runtime: RuntimeDep, body: Body) -> Response:
        return _batch(runtime, kind, plural, body)

    return endpoint


for _kind, _plural, _id_field, _accepted, _single_doc, _batch_doc in _RECORD_ROUTES:
    _model = _kind.capitalize()
    router.add_api_route(
        f"/{_plural}",
        _single_endpoint(_kind, _id_field),
        methods=["POST"],
        name=f"post_{_kind}",
        description=_single_doc,
        status_code=status.HTTP_202_ACCEPTED,
        response_model=_accepted,
        tags=[_plural],
        dependencies=[require("ingest:write")],
        openapi_extra=_body_of(f"{_model}In"),
        responses={
            409: {"description": "version-conflict: this version is stored with other content"},
            413: {"description": "body too large"},
            415: {"description": "the body is not application/json"},
            422: {"description": "rejected"},
        },
    )
    router.add_api_route(
        f"/{_plural}/batch",
        _batch_endpoint(_kind, _plural),
        methods=["POST"],
        name=f"post_{_plural}_batch",
        description=_batch_doc,
        response_model=BatchResult,
        tags=[_plural],
        dependencies=[require("ingest:write")],
        openapi_extra=_body_of(f"{_model}sBatchIn"),
        responses={413: {"description": "body or batch too large"}},
    )


@router.post(
    "/imports/orders",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["imports"],
    dependencies=[require("ingest:write")],
)
def post_order_import(
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description=imports.FILE_DESCRIPTION)],
    items: Annotated[
        UploadFile | None,
        File(
            description="optional details file of the orders' items, one row per item, joined "
            "by order id (Taobao's 宝贝报表: 订单编号, 标题, 价格, 购买数量, 外部系统编号 / "
            "商家编码, 商品属性); its items replace the orders file's"
        ),
    ] = None,
    mapping: Annotated[str | None, Form(description=imports.MAPPING_DESCRIPTION)] = None,
    encoding: Annotated[
        str | None, Form(description="utf-8 | gbk | gb18030; default: detect")
    ] = None,
    currency: Annotated[str | None, Form(description="for rows without one (default CNY)")] = None,
    channel: Annotated[
        str | None, Form(description="for rows without one (Taobao: taobao)")
    ] = None,
) -> ImportJobRead:
    """Start a bulk order import from a CSV (ours or the shop export); poll the returned job."""
    job = runtime.imports.submit(
        file.file,
        filename=file.filename,
        options=imports.parse_options(mapping, encoding, currency, channel),
        details=items.file if items is not None else None,
    )
    return imports.job_read(job, [])


@router.get("/imports/{job_id}", tags=["imports"], dependencies=[require("ingest:read")])
def get_order_import(
    runtime: RuntimeDep,
    job_id: str,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ImportJobRead:
    """Progress of an import (rows read / accepted / duplicate / rejected) and rejected rows."""
    with runtime.db.sessions() as session:
        found = imports.load_job(session, job_id, cursor, limit)
    if found is None:
        raise NotFound(f"no import job {job_id}")
    return found


@router.get(
    "/orders/{order_id}",
    response_model=OrderHistoryRead,
    tags=["orders"],
    dependencies=[require("ingest:read", "pii:read")],
)
def get_order(runtime: RuntimeDep, order_id: str) -> dict[str, Any]:
    """An order's current state and every version kept, in arrival order (personal data
    unmasked, hence pii:read)."""
    with runtime.db.sessions() as session:
        return order_history.order_history(session, order_id)


@router.get("/stats", tags=["operations"], dependencies=[require("ingest:read")])
def get_stats(
    runtime: RuntimeDep,
    windows: Annotated[str, Query(description="comma-separated: 1h, 24h, 7d, 30d")] = "1h,24h,7d",
) -> dict[str, Any]:
    """Data quality: accepted / duplicate / rejected by source, kind and reason per window."""
    names = [w.strip() for w in windows.split(",") if w.strip()]
    unknown = [w for w in names if w not in intake_stats.WINDOWS]
    if unknown or not names:
        raise ValidationProblem(f"unknown window(s) {unknown}; use {sorted(intake_stats.WINDOWS)}")
    with runtime.db.sessions() as session:
        return {"windows": intake_stats.intake_stats(session, names)}


@router.post("/admin/replay", tags=["operations"], dependencies=[require("ingest:admin")])
def post_replay(runtime: RuntimeDep, body: ReplayRequest) -> ReplayResult:
    """Re-publish the current versions in a range (sequence and/or received time) to Kafka."""
    for moment in (body.since, body.until):
        if moment is not None and moment.tzinfo is None:
            raise ValidationProblem("since/until need a timezone offset")
    with runtime.write_lock, runtime.db.unit_of_work() as session:
        queued = replay.replay(
            session,
            from_sequence=body.from_sequence,
            to_sequence=body.to_sequence,
            since=body.since,
            until=body.until,
            kinds=body.kinds,
        )
    runtime.relay.notify()
    return ReplayResult(queued=queued)
