"""What production refuses to start with: a development, generated, short or weak key.

With ``CRM_ENVIRONMENT=production`` (what docker-compose.yml sets) every service command
checks its admin key (``CRM_API_KEY``), its extra keys (``CRM_API_KEYS``) and the cursor
secret (``CRM_CURSOR_SECRET``) before anything else, and exits non-zero with the reason
when one of them is:

- missing (the admin key): a service without one would run with no administrator, and the
  development runner's habit is to generate one;
- a known development value (the tests' key, the secret templates' placeholder, ...);
- the key the development runner generated and kept in ``<CRM_DATA_DIR>/api_key``;
- shorter than :data:`MIN_LENGTH` characters, or with fewer than :data:`MIN_DISTINCT`
  different characters (``aaaa...``, ``0123012301230123...``).

The key itself is never printed: the reason names the setting only."""

from __future__ import annotations

import os
from pathlib import Path

from shared.clock import ENVIRONMENT_VARIABLE
from shared.config import ServiceSettings

MIN_LENGTH = 32
MIN_DISTINCT = 12
#: values that are known outside the deployment: the tests', the templates', the docs'
DEVELOPMENT_KEYS = frozenset(
    {"test-admin-key", "change-me-to-a-long-random-api-key", "dev", "development", "admin"}
)


def is_production() -> bool:
    return os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() == "production"


def key_problem(value: str, data_dir: Path) -> str | None:
    """Why ``value`` is not a production key, or None."""
    if value in DEVELOPMENT_KEYS or value.lower().startswith(("change-me", "changeme", "test-")):
        return "is a development key"
    generated = data_dir / "api_key"
    if generated.is_file() and generated.read_text(encoding="utf-8").strip() == value:
        return f"is the key the development runner generated ({generated})"
    if len(value) < MIN_LENGTH:
        return f"is shorter than {MIN_LENGTH} characters"
    if len(set(value)) < MIN_DISTINCT:
        return f"is weak (fewer than {MIN_DISTINCT} different characters)"
    return None


def production_key_problems(settings: ServiceSettings) -> list[str]:
    """Every reason the settings' keys are refused in production; empty outside production."""
    if not is_production():
        return []
    problems: list[str] = []
    admin = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    if not admin:
        problems.append("CRM_API_KEY is not set (production never runs on a generated key)")
    else:
        problem = key_problem(admin, settings.data_dir)
        if problem:
            problems.append(f"CRM_API_KEY {problem}")
    for index, extra in enumerate(settings.api_keys):
        problem = key_problem(extra, settings.data_dir)
        if problem:
            problems.append(f"CRM_API_KEYS key #{index + 1} {problem}")
    if settings.cursor_secret is not None:
        problem = key_problem(settings.cursor_secret.get_secret_value(), settings.data_dir)
        if problem:
            problems.append(f"CRM_CURSOR_SECRET {problem}")
    return problems
