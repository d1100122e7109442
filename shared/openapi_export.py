"""``python -m shared.openapi_export``: write each service's OpenAPI document to
docs/openapi/<service>.json (a test fails when one is stale, like docs/asyncapi.json).

The documents are built from the apps themselves (no process, database or broker needed).
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from shared import manifest

SERVICES = manifest.NAMES
DOC_DIR = Path(__file__).resolve().parents[1] / "docs" / "openapi"


def document(service: str) -> dict[str, Any]:
    """The OpenAPI document ``service`` serves at /openapi.json (default settings)."""
    app_module = importlib.import_module(f"services.{service}.app")
    config = importlib.import_module(f"services.{service}.config")
    with tempfile.TemporaryDirectory() as data_dir:
        settings = config.Settings(
            data_dir=Path(data_dir), kafka_bootstrap_servers="127.0.0.1:1", run_consumer=False
        )
        app = app_module.create_app(settings)
        try:
            return app.openapi()
        finally:
            app.state.runtime.db.dispose()


def render(service: str) -> str:
    return json.dumps(document(service), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main() -> int:
    DOC_DIR.mkdir(parents=True, exist_ok=True)
    for service in SERVICES:
        path = DOC_DIR / f"{service}.json"
        path.write_text(render(service), encoding="utf-8")
        print(f"wrote {path.relative_to(DOC_DIR.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
