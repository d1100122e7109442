"""Declare the API-key scheme and each operation's scopes in a service's OpenAPI document,
so that Swagger UI's "Authorize" button fills ``X-API-Key`` and "Try it out" works."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

SCHEME = "ApiKeyAuth"


def _scopes_of(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        yield from getattr(sub.call, "scopes", None) or ()
        yield from _scopes_of(sub)


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route of ``app`` as mounted (path with prefixes, router dependencies
    included): FastAPI 0.16x keeps included routers nested and resolves them lazily."""
    contexts = getattr(routing, "iter_route_contexts", None)
    if contexts is None:  # older FastAPI: app.routes is flat
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for context in contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def route_scopes(route: Any) -> tuple[str, ...] | None:
    """The scopes ``route`` requires (``()``: any valid key), or None if it needs no key."""
    found = list(_scopes_of(route.dependant))
    guarded = any(hasattr(sub.call, "scopes") for sub in _walk(route.dependant))
    return tuple(dict.fromkeys(found)) if guarded else None


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _walk(sub)


def declare_api_key_security(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so the document names the ``X-API-Key`` scheme, and every
    operation that needs a key lists it with its scopes (``x-required-scopes`` and a line
    in the description: OpenAPI's apiKey schemes carry no scopes of their own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        components = document.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key: the admin key of the environment (CRM_API_KEY) or a "
            "managed key (crm_<key id>_<secret>) from POST /v1/api-keys on the profile service.",
        }
        paths = document.get("paths", {})
        for route in api_routes(app):
            if not route.include_in_schema:
                continue
            scopes = route_scopes(route)
            if scopes is None:
                continue
            for method in route.methods or ():
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                operation["security"] = [{SCHEME: []}]
                operation["x-required-scopes"] = list(scopes)
                if scopes:
                    needs = f"Needs an API key with the scope(s): {', '.join(scopes)}."
                    text = operation.get("description", "")
                    operation["description"] = f"{text}\n\n{needs}" if text else needs
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
