"""docs/openapi/<service>.json are the documents the services serve (regenerate with
``python -m shared.openapi_export``), and they describe the real error bodies and headers."""

from __future__ import annotations

import json

import pytest

from shared import openapi_export
from shared.openapi_problems import PROBLEM_MEDIA_TYPE


@pytest.mark.parametrize("service", openapi_export.SERVICES)
def test_the_exported_document_is_current(service: str) -> None:
    path = openapi_export.DOC_DIR / f"{service}.json"
    assert path.read_text(encoding="utf-8") == openapi_export.render(service), (
        f"{path} is stale: run `python -m shared.openapi_export`"
    )


@pytest.mark.parametrize("service", openapi_export.SERVICES)
def test_errors_are_documented_as_the_problems_the_service_sends(service: str) -> None:
    document = json.loads((openapi_export.DOC_DIR / f"{service}.json").read_text(encoding="utf-8"))
    text = json.dumps(document)
    assert "HTTPValidationError" not in text and '"loc"' not in text  # FastAPI's 422 is gone
    problem = document["components"]["schemas"]["Problem"]
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldProblem"}
    assert document["components"]["schemas"]["FieldProblem"]["required"] == [
        "field",
        "code",
        "message",
    ]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert set(response["content"]) == {PROBLEM_MEDIA_TYPE}, (method, path, status)
            if operation.get("security"):
                assert {"401", "429"} <= set(responses), (method, path)
            if operation.get("x-required-scopes"):
                assert "403" in responses, (method, path)
            if operation.get("requestBody"):
                assert {"413", "422"} <= set(responses), (method, path)
            if any(p["name"] == "cursor" for p in operation.get("parameters", [])):
                assert "400" in responses, (method, path)  # invalid-cursor
            if method != "get":
                assert "409" in responses, (method, path)
            if method == "post":
                names = [p["name"] for p in operation.get("parameters", [])]
                assert "Idempotency-Key" in names, (method, path)
