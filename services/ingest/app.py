from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.ingest import schemas
from services.ingest.config import Settings
from services.ingest.consumer import CONSUMED_TOPICS, build_consumers
from services.ingest.delivery import EPOCH_TOPIC
from services.ingest.routes import router
from services.ingest.runtime import IngestRuntime
from services.ingest.subject_export import export_section
from shared.api import build_app
from shared.config import ServiceSettings
from shared.exports import ANSWERS, answering_exports
from shared.runtime import PeriodicJob

MIGRATIONS = Path(__file__).parent / "migrations"

log = logging.getLogger(__name__)

DESCRIPTION = """Validates, normalises and deduplicates orders, customers and interactions;
stores every accepted record durably (before answering 2xx) and relays it to Kafka through a
transactional outbox, so ingest keeps accepting while the broker is down.

The same rules apply to REST, the raw topics (crm.raw.orders.v1, crm.raw.customers.v1,
crm.raw.interactions.v1; rejects go to crm.deadletter.v1 with their origin and reason) and
the CSV import. Each rule is described on the request schemas (OrderIn, CustomerIn,
InteractionIn). A rejected single record is a 422 problem+json listing every
`{field, code, message}`; a batch answers 200 with a result per record.

`Idempotency-Key` is honoured on every POST: a repeat returns the first response, the same
key with a different body is a 409.
"""


def create_runtime(settings: ServiceSettings | None = None) -> IngestRuntime:
    settings = settings or Settings()
    if not isinstance(settings, Settings):
        raise TypeError(f"ingest needs its own Settings, not {type(settings).__name__}")
    runtime = IngestRuntime(
        settings,
        migrations_dir=MIGRATIONS,
        consumer_factory=answering_exports(build_consumers, export_section),
        # the epoch guard reads its topic; the rest follow from the registries
        consumed_topics=(*CONSUMED_TOPICS, EPOCH_TOPIC, *ANSWERS.topics),
    )

    def check_epoch() -> None:
        try:
            runtime.epoch_guard.check()
        except Exception as exc:  # the broker is down: the relay retries, we check again
            log.info("ingest: broker epoch not verified (%s)", type(exc).__name__)

    if settings.run_relay:
        runtime.jobs.append(PeriodicJob("ingest-epoch", settings.epoch_check_interval, check_epoch))
    return runtime


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    runtime = create_runtime(settings)
    s = runtime.settings
    app = build_app(
        runtime=runtime,
        title="CRM ingest",
        description=DESCRIPTION,
        routers=[router],
        max_body_bytes=s.max_batch_body_bytes,
        body_limit_overrides=[
            ("/v1/imports", s.max_import_bytes),
            ("/v1/orders/batch", s.max_batch_body_bytes),
            ("/v1/customers/batch", s.max_batch_body_bytes),
            ("/v1/interactions/batch", s.max_batch_body_bytes),
            ("/v1/orders", s.max_single_body_bytes),
            ("/v1/customers", s.max_single_body_bytes),
            ("/v1/interactions", s.max_single_body_bytes),
        ],
        on_startup=runtime.imports.resume_interrupted,
        # the single-record routes are the hot path (one request per order): dispatched
        # without FastAPI's routing and dependency resolution (see FastLaneMiddleware)
        # the record routes parse their bodies with orjson and check duplicate keys there
        self_checked_json=["/v1/orders", "/v1/customers", "/v1/interactions"],
        fast_routes=[
            ("POST", "/v1/orders"),
            ("POST", "/v1/customers"),
            ("POST", "/v1/interactions"),
        ],
    )
    _document_request_bodies(app)
    return app


def _document_request_bodies(app: FastAPI) -> None:
    """Routes read their JSON bodies themselves; publish the documented input schemas."""
    original = app.openapi
    models: list[type[BaseModel]] = [
        schemas.OrderIn,
        schemas.OrdersBatchIn,
        schemas.CustomerIn,
        schemas.CustomersBatchIn,
        schemas.InteractionIn,
        schemas.InteractionsBatchIn,
    ]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        _, defs = models_json_schema(
            [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
