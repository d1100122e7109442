"""``crm report clv``: segment's predictive CLV report as tables (offline)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from crmctl.app import app
from crmctl.clv_report import clv_tables

BODY: dict[str, Any] = {
    "currency": "EUR",
    "fit": {
        "fit_id": 7,
        "currency": "EUR",
        "status": "ok",
        "reason": None,
        "as_of": "2026-12-05T00:00:00Z",
        "window_start": "2025-12-10T09:30:00Z",
        "customers": 300,
        "repeat_customers": 120,
        "bgnbd": {"parameters": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
                  "converged": True},
        "gamma_gamma": {"parameters": {"p": 6.25, "q": 3.74, "gamma": 15.44}, "converged": True},
    },
    "holdout": {
        "holdout_from": "2026-09-06T00:00:00Z",
        "holdout_to": "2026-12-05T00:00:00Z",
        "holdout_days": 90,
        "customers": 250,
        "status": "insufficient_data",
        "reason": "12 repeat buyers (minimum 20)",
        "buckets": [],
    },
    "clv_distribution": {
        "deciles": [{"decile": 1, "customers": 30, "total": "900.00", "share": 0.41}]
    },
}  # fmt: skip


def rendered(body: dict[str, Any]) -> str:
    console = Console(record=True, width=200)
    for table in clv_tables(body):
        console.print(table)
    return " ".join(console.export_text().split())  # titles wrap over narrow tables


def test_the_clv_report_shows_the_fit_parameters_holdout_and_deciles() -> None:
    text = rendered(BODY)
    assert "clv EUR: fit" in text and "2025-12-10T09:30:00Z" in text
    assert "4.414" in text and "15.44" in text  # each model's parameters
    # a holdout without numbers says why
    assert "insufficient_data │ 12 repeat buyers (minimum 20)" in text
    assert "900.00" in text and "0.41" in text


def test_a_currency_without_a_fit_says_so() -> None:
    text = rendered({"currency": "JPY", "fit": None, "holdout": None, "clv_distribution": None})
    assert "clv JPY: no fit yet" in text


def test_the_clv_report_has_no_chart() -> None:
    result = CliRunner().invoke(app, ["--api-key", "k", "report", "clv", "--png", "x.png"])
    assert result.exit_code == 1
