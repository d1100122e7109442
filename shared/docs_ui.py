"""Swagger UI and ReDoc served from the service itself, so /docs works offline.

FastAPI's default pages load their JavaScript and CSS from a CDN (a blank page without
the internet). The assets come from the ``fastapi-offline`` wheel (Swagger UI 5, which
renders OpenAPI 3.1, and ReDoc), served under ``/docs/static``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_PREFIX = "/docs/static"


def assets_dir() -> Path:
    """Where the installed Swagger UI / ReDoc files are."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def serve_docs_locally(app: FastAPI, title: str) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their assets from this process.
    The app must be built with ``docs_url=None, redoc_url=None``."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=assets_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - API",
            swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - API",
            redoc_js_url=f"{STATIC_PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_PREFIX}/favicon.png",
            with_google_fonts=False,
        )
