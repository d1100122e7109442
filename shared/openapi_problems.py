"""Make each service's OpenAPI document tell the truth about errors and headers.

FastAPI documents a 422 as ``{detail: [{loc, msg, type}]}``; ours is RFC 9457
problem+json with ``errors: [{field, code, message}]`` (shared.errors). This rewrites every
operation's error responses to the body the service really sends, adds the ones the
platform can answer (401 / 403 / 429 where a key is needed, 404 where a path names
something, 400 where a cursor is taken, 409 on every write, 413 where a body is sent, 415 on every POST/PUT/PATCH but uploads) and documents the ``Idempotency-Key`` header
on every POST. Runs after :func:`shared.openapi_security.declare_api_key_security`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from shared.errors import PROBLEM_BASE

PROBLEM_MEDIA_TYPE = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details. `type` is stable: "
    f"{PROBLEM_BASE}<slug> (validation-error, unauthorized, forbidden, not-found, conflict, "
    "payload-too-large, rate-limited, unavailable, ...).",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "on a 422: every problem found",
            "items": {"$ref": "#/components/schemas/FieldProblem"},
        },
    },
    "additionalProperties": True,
}
FIELD_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "FieldProblem",
    "type": "object",
    "required": ["field", "code", "message"],
    "properties": {
        "field": {
            "type": "string",
            "description": "the path in the body (`items[2].sku`) or `query.<name>`; empty "
            "for the whole request",
        },
        "code": {"type": "string", "description": "stable, e.g. money.scale, phone.invalid"},
        "message": {"type": "string"},
    },
}
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "Makes a retry safe: a repeat with the same key returns the first "
    "response (for 24 h, CRM_IDEMPOTENCY_KEY_RETENTION_HOURS); the same key with another "
    "body is a 409.",
}
STANDARD = {
    "400": "The cursor is not one this API returned (`invalid-cursor`)",
    "401": "No API key, or an unknown, revoked or expired one",
    "403": "The API key lacks a required scope",
    "404": "Not found",
    "409": "Conflict: the state does not allow it, or an Idempotency-Key reused with another body",
    "413": "The body (or a batch, or an upload) is too large",
    "415": "The body is not declared as application/json (an upload: multipart/form-data): "
    "`unsupported-media-type` (shared.strict_input)",
    "422": "The request is not valid: `errors` lists every problem as {field, code, message}",
    "429": "Too many requests for this key (see Retry-After)",
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _takes_a_form(operation: dict[str, Any]) -> bool:
    content = (operation.get("requestBody") or {}).get("content") or {}
    return any(media.startswith(("multipart/", "application/x-www-form")) for media in content)


def rewrite(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every operation's error responses and headers made true."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["FieldProblem"] = FIELD_PROBLEM_SCHEMA
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            wanted: set[str] = (
                {"422"} if (operation.get("parameters") or operation.get("requestBody")) else set()
            )
            if operation.get("security"):
                wanted |= {"401", "429"}
                if operation.get("x-required-scopes"):
                    wanted.add("403")
            if "{" in path:
                wanted.add("404")
            if any(p.get("name") == "cursor" for p in operation.get("parameters") or []):
                wanted.add("400")
            if method in {"post", "put", "patch"}:
                # shared.strict_input answers 415 to any body not declared as JSON, even on
                # a write that takes no body; a form route (an upload) parses its own body
                if not _takes_a_form(operation):
                    wanted.add("415")
                if operation.get("requestBody"):
                    wanted |= {"413", "422"}
            if method != "get":
                wanted.add("409")  # a write the current state does not allow
            if method == "post":
                params = operation.setdefault("parameters", [])
                if not any(p.get("name", "").lower() == "idempotency-key" for p in params):
                    params.append(IDEMPOTENCY_KEY)
            for status in sorted(wanted | {s for s in responses if s in STANDARD}):
                described = responses.get(status, {}).get("description")
                keep = described if described and described not in ("Validation Error",) else None
                responses[status] = _problem(keep or STANDARD[status])
            operation["responses"] = dict(sorted(responses.items()))
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and f"#/components/schemas/{unused}" not in str(document.get("paths")):
            del schemas[unused]
    return document


def document_problems(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so the document it returns has gone through :func:`rewrite`."""
    build = app.openapi
    rewritten: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        document = build()
        if not rewritten or rewritten[0] is not document:
            rewritten[:] = [rewrite(document)]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
