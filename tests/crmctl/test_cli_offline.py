"""The ``crm`` command without a running system: help, configuration, failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmctl import kafka_ops
from crmctl.app import app
from crmctl.config import resolve
from devtools.broker import free_port
from shared import manifest
from tests.e2e.system import ROOT

COMMANDS = [
    ["status"],
    ["import", "orders"],
    ["export"],
    ["erase"],
    ["replay"],
    ["rescore"],
    ["report"],
    ["segments", "list"],
    ["segments", "show"],
    ["campaigns", "list"],
    ["campaigns", "show"],
    ["campaigns", "launch"],
    ["campaigns", "report"],
    ["deadletters", "list"],
    ["deadletters", "show"],
    ["deadletters", "redrive"],
    ["keys", "list"],
    ["keys", "create"],
    ["keys", "rotate"],
    ["keys", "revoke"],
    ["keys", "audit"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_a_json_option(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--json" in result.output


def test_the_installed_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crmctl", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "deadletters" in done.stdout


def test_defaults_follow_make_run_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text("k-from-file\n")
    env = {"CRM_DATA_DIR": str(tmp_path), "SEGMENT_PORT": "18003", "CRM_BROKER_PORT": "19092"}
    target = resolve(
        urls={}, api_key=None, bootstrap_servers=None, namespace=None, timeout=5, env=env
    )
    assert target.urls["ingest"] == "http://127.0.0.1:8001"
    assert target.urls["segment"] == "http://127.0.0.1:18003"
    assert target.api_key == "k-from-file"
    assert target.bootstrap_servers == "127.0.0.1:19092"
    explicit = resolve(
        urls={"ingest": "http://ingest:80"},
        api_key="k",
        bootstrap_servers="kafka:9092",
        namespace="t.",
        timeout=5,
        env={**env, "CRM_API_KEY": "k-env", "CRM_PROFILE_URL": "http://profile:80"},
    )
    assert explicit.urls["ingest"] == "http://ingest:80"
    assert explicit.urls["profile"] == "http://profile:80"
    assert (explicit.api_key, explicit.bootstrap_servers, explicit.namespace) == (
        "k",
        "kafka:9092",
        "t.",
    )


def test_each_service_of_the_manifest_has_a_url_option_and_its_consumer_group() -> None:
    """A service added to ``shared.manifest`` gets ``--<name>-url`` and its lag in ``crm
    status`` without an edit here."""
    seen: dict[str, str | None] = {}

    @app.command("urls-probe", hidden=True)
    def probe(ctx: typer.Context) -> None:
        seen.update(ctx.obj.urls)

    try:
        args = [arg for name in manifest.NAMES for arg in (f"--{name}-url", f"http://{name}:1")]
        result = CliRunner().invoke(app, [*args, "urls-probe"])
    finally:
        app.registered_commands.pop()
    assert result.exit_code == 0, result.output
    assert seen == {name: f"http://{name}:1" for name in manifest.NAMES}
    assert {f"crm-{name}" for name in manifest.NAMES} <= set(kafka_ops.SERVICE_GROUPS)
    assert "crm-ingest-profiles" in kafka_ops.SERVICE_GROUPS


def test_an_unreachable_service_fails_with_exit_1_and_a_json_error() -> None:
    port = free_port()  # nothing listens there
    result = CliRunner().invoke(
        app, ["--segment-url", f"http://127.0.0.1:{port}", "--api-key", "k", "rescore", "--json"]
    )
    assert result.exit_code == 1
    assert "unreachable" in json.loads(result.stdout.splitlines()[0])["error"]


def test_an_unknown_report_fails() -> None:
    result = CliRunner().invoke(app, ["--api-key", "k", "report", "churn"])
    assert result.exit_code == 1


def test_erase_asks_first_and_stops_without_a_yes() -> None:
    port = free_port()
    result = CliRunner().invoke(
        app, ["--profile-url", f"http://127.0.0.1:{port}", "erase", "c-1"], input="n\n"
    )
    assert result.exit_code == 1
    assert "not confirmed" in result.output


def test_erase_as_json_without_a_yes_and_no_terminal_refuses_with_exit_2() -> None:
    port = free_port()  # never reached: it refuses before any request
    result = CliRunner().invoke(
        app, ["--profile-url", f"http://127.0.0.1:{port}", "erase", "c-1", "--json"], input="y\n"
    )
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "pass --yes" in json.loads(lines[0])["error"]
    assert "Erase customer" not in result.output  # no prompt, on stdout or stderr
