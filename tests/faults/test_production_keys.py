"""Production refuses the development key: with ``CRM_ENVIRONMENT=production`` a service
exits non-zero with a clear reason (never the key itself) when its admin key is missing,
a development value, the one the development runner generated, short or weak; a strong key
starts (the ``migrate`` command, which goes through the same check, exits 0). Outside
production the same weak key is accepted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import manifest

STRONG = "Qv7-rX2pLk9_ZmT4wB8nHc3JdF6gYs1E"
GENERATED = "Generated_by_devrun_kept_in_data_dir_0123456789"


def run(service: str, tmp_path: Path, key: str | None, environment: str = "production"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "KAFKA_"))}
    env.update(
        {
            "CRM_ENVIRONMENT": environment,
            "CRM_DATA_DIR": str(tmp_path),
            "CRM_SECRETS_DIR": str(tmp_path / "no-secrets"),
            f"{service.upper()}_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        }
    )
    if key is not None:
        env["CRM_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "CRM_API_KEY is not set"),
        ("test-admin-key", "is a development key"),
        ("change-me-to-a-long-random-api-key", "is a development key"),
        ("S3cret-but-short", "shorter than 32 characters"),
        ("ab" * 20, "is weak"),
        (GENERATED, "the development runner generated"),
    ],
)
def test_production_refuses_the_development_or_a_weak_key(
    tmp_path: Path, key: str | None, reason: str
) -> None:
    (tmp_path / "api_key").write_text(GENERATED + "\n")
    result = run("profile", tmp_path, key)
    print(f"\n[production key] {reason!r}: exit {result.returncode}")
    assert result.returncode == 78, result.stderr
    assert "refusing to start in production" in result.stderr and reason in result.stderr
    if key:
        assert key not in result.stderr
    assert not (tmp_path / "x.db").exists()  # refused before touching the database


@pytest.mark.parametrize("service", manifest.NAMES)
def test_every_service_starts_in_production_with_a_strong_key(tmp_path: Path, service: str) -> None:
    result = run(service, tmp_path, STRONG)
    assert result.returncode == 0, result.stderr


def test_outside_production_the_development_key_is_accepted(tmp_path: Path) -> None:
    result = run("profile", tmp_path, "test-admin-key", environment="development")
    assert result.returncode == 0, result.stderr
