"""Compose keeps secrets out of ``environment:``: no environment value of any service is a
key, a password, credentials in a URL or a secret template's value, whatever its variable is
called (tests/deploy/test_compose.py checks the names); every CRM service runs with
``CRM_ENVIRONMENT=production`` (so it refuses a development key, see
test_production_keys.py) and gets its admin key and database URL as files under
/run/secrets."""

from __future__ import annotations

import re
from typing import Any

from shared import manifest
from tests.deploy.test_compose import (
    COMPOSE_FILE,
    SECRETS_DIR,
    _environment,
    _load_yaml,
    _secret_targets,
)

CRM_SERVICES = manifest.NAMES
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
#: a value that looks generated: long, no spaces, letters and digits mixed
RANDOM_LOOKING = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-+/=.]{24,}$")


def _values(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            found.append((name, key, "" if value is None else str(value)))
    return found


def test_no_secret_value_in_any_environment() -> None:
    compose = _load_yaml(COMPOSE_FILE.read_text(encoding="utf-8"))
    templates = {path.read_text(encoding="utf-8").strip() for path in SECRETS_DIR.glob("*.example")}
    templates = {t for t in templates if len(t) >= 8}
    values = _values(compose)
    suspicious = [
        (name, key)
        for name, key, value in values
        if CREDENTIALS_IN_URL.search(value)
        or value in templates
        or any(t in value for t in templates)
        or (RANDOM_LOOKING.match(value) and not value.startswith("/run/secrets/"))
    ]
    print(f"\n[compose secrets] environment values checked={len(values)} suspicious={suspicious}")
    assert values and templates
    assert suspicious == []


def test_crm_services_run_in_production_with_file_secrets() -> None:
    services = _load_yaml(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    for name in CRM_SERVICES:
        for job in (name, f"{name}-migrate"):
            env = _environment(services[job])
            assert env.get("CRM_ENVIRONMENT") == "production", job
            assert not {"CRM_API_KEY", "CRM_CURSOR_SECRET", "CRM_API_KEYS"} & set(env), job
            assert not any(key.endswith("DATABASE_URL") for key in env), job
            assert set(_secret_targets(services[job])) == {f"{name}_database_url", "crm_api_key"}
