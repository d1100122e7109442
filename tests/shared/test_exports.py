"""The export answerer's registry: what it consumes comes from it, and each request is
answered with the service's section on the parts topic, keyed by the export id."""

from __future__ import annotations

from typing import Any

import orjson

from devtools.testing import as_inbound
from shared import topics
from shared.exports import (
    ANSWERS,
    Answering,
    ExportRequest,
    ExportRequestedEvent,
)
from shared.registry import envelope_classes


class Recording:
    def __init__(self) -> None:
        self.published: list[tuple[str, str | None, bytes]] = []

    def publish_all(self, records: list[tuple[str, str | None, bytes]]) -> None:
        self.published.extend(records)


def _request(export_id: str, *customer_ids: str) -> ExportRequestedEvent:
    return ExportRequestedEvent(
        source="profile",
        key=export_id,
        data=ExportRequest(
            export_id=export_id,
            customer_ids=list(customer_ids),
            requested_at="2026-12-01T00:00:00Z",
        ),
    )


def test_the_answerer_consumes_exactly_the_export_requests() -> None:
    assert ANSWERS.topics == (topics.EXPORT_REQUESTS,)
    assert ANSWERS.event_types == {"export.requested"}
    assert ANSWERS.unclaimed(envelope_classes()) == set()


def test_each_request_is_answered_with_the_section_of_its_customers() -> None:
    asked: list[list[str]] = []

    def section(session: Any, customer_ids: list[str]) -> dict[str, Any]:
        asked.append(customer_ids)
        return {"orders": len(customer_ids)}

    publisher = Recording()
    batch = [as_inbound(_request("x1", "c1", "c2"), 0), as_inbound(_request("x2", "c3"), 1)]
    handler = ANSWERS.batch_handler(Answering("segment", publisher, section))  # type: ignore[arg-type]
    handler(None, batch)  # type: ignore[arg-type]
    assert asked == [["c1", "c2"], ["c3"]]
    assert [(topic, key) for topic, key, _ in publisher.published] == [
        (topics.EXPORT_PARTS, "x1"),
        (topics.EXPORT_PARTS, "x2"),
    ]
    first = orjson.loads(publisher.published[0][2])
    assert first["type"] == "export.part_recorded"
    assert first["source"] == "segment"
    assert first["data"]["service"] == "segment"
    assert first["data"]["section"] == {"orders": 2}
