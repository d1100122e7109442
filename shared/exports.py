"""Subject-access exports across the services, without any service calling another.

Profile publishes ``export.requested`` (the export id and every customer id of the
person) on ``crm.exports.requests.v1``. Ingest, segment and campaign each run an
:func:`export_answerer`: a consumer (the shared loop dispatching through the ``ANSWERS``
registry, like every service's) that builds its section of the document (readable
field names, never storage keys) and publishes ``export.part_recorded`` on
``crm.exports.parts.v1``; profile collects the parts and ``GET /v1/exports/{id}`` shows
progress and the assembled document. A part is published straight to the broker from
the handler (acknowledged before the request's offset is committed): a redelivered
request answers again, and profile keeps one part per service, so a repeat is harmless.
Parts carry personal data: the topics should keep them briefly (``retention.ms``).
The answering services are those whose ``shared.manifest`` entry writes
``crm.exports.parts.v1`` (``ANSWERING_SERVICES``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from sqlalchemy.orm import Session

from shared import manifest, topics
from shared.bus import ConsumerLoop, Inbound
from shared.events import EnvelopeBase, Payload, utcnow
from shared.producer import Publisher
from shared.registry import Registry

#: the services that answer an export request (profile assembles): those whose manifest
#: entry writes export parts
ANSWERING_SERVICES = manifest.EXPORT_ANSWERERS

SectionBuilder = Callable[[Session, list[str]], dict[str, Any]]


class ExportRequest(Payload):
    export_id: str
    customer_ids: list[str]
    requested_at: datetime


class ExportRequestedEvent(EnvelopeBase):
    """Profile asks every service for what it holds on these customer ids."""

    topic: ClassVar[str] = topics.EXPORT_REQUESTS
    type: Literal["export.requested"] = "export.requested"
    data: ExportRequest


class ExportPart(Payload):
    export_id: str
    service: str
    section: dict[str, Any]
    answered_at: datetime


class ExportPartRecordedEvent(EnvelopeBase):
    """One service's part of an export (keyed by export id)."""

    topic: ClassVar[str] = topics.EXPORT_PARTS
    type: Literal["export.part_recorded"] = "export.part_recorded"
    data: ExportPart


def decode_request(record: Any) -> tuple[str, str, ExportRequestedEvent]:
    event = ExportRequestedEvent.model_validate_json(record.value)
    return event.type, str(event.event_id), event


def decode_part(record: Any) -> tuple[str, str, ExportPartRecordedEvent]:
    event = ExportPartRecordedEvent.model_validate_json(record.value)
    return event.type, str(event.event_id), event


@dataclass(frozen=True)
class Answering:
    """What answering an export request takes: the answering service's name, its
    publisher, and how it builds its section."""

    service: str
    publisher: Publisher
    build_section: SectionBuilder


def answer_requests(session: Session, messages: list[Inbound], deps: Answering) -> None:
    """Each request answered with this service's section, published straight to the broker
    (acknowledged before the requests' offsets are committed)."""
    for message in messages:
        event: ExportRequestedEvent = message.event
        section = deps.build_section(session, list(event.data.customer_ids))
        part = ExportPartRecordedEvent(
            source=deps.service,
            key=event.data.export_id,
            data=ExportPart(
                export_id=event.data.export_id,
                service=deps.service,
                section=section,
                answered_at=utcnow(),
            ),
        )
        deps.publisher.publish_all(
            [(topics.EXPORT_PARTS, part.key, part.model_dump_json(by_alias=True).encode())]
        )


#: what an export answerer consumes (see ``shared.registry``); its topics come from it
ANSWERS: Registry[Answering] = Registry({ExportRequestedEvent: answer_requests})


def export_answerer(runtime: Any, build_section: SectionBuilder) -> ConsumerLoop:
    """The consumer by which a service answers export requests with its section."""
    settings = runtime.settings
    return ConsumerLoop(
        name=f"{runtime.name}-exports",
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.group_id}-exports",
        topics=list(ANSWERS.topics),
        db=runtime.db,
        publisher=runtime.publisher,
        batch_handler=ANSWERS.batch_handler(
            Answering(runtime.name, runtime.publisher, build_section)
        ),
        decoder=decode_request,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        side=True,
    )


def answering_exports(
    factory: Callable[[Any], list[ConsumerLoop]], build_section: SectionBuilder
) -> Callable[[Any], list[ConsumerLoop]]:
    """A service's consumer factory plus its export answerer."""

    def build(runtime: Any) -> list[ConsumerLoop]:
        return [*factory(runtime), export_answerer(runtime, build_section)]

    return build
