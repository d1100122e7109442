"""Segment's predictive CLV report (``GET /v1/reports/clv``) as terminal tables: the fit
and its parameters, the holdout check per calibration frequency, the CLV distribution."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from crmctl.reports import rows_table


def clv_tables(report: dict[str, Any]) -> list[Table]:
    """The tables that show ``GET /v1/reports/clv``'s body; a part without numbers says why."""
    currency = report.get("currency") or "-"
    fit = report.get("fit")
    out: list[Table] = []
    if fit is None:
        out.append(rows_table(f"clv {currency}: no fit yet", []))
        return out
    summary = {
        "fit_id": fit["fit_id"],
        "status": fit["status"],
        "reason": fit.get("reason"),
        "as_of": fit["as_of"],
        "window_start": fit.get("window_start"),
        "customers": fit["customers"],
        "repeat_customers": fit["repeat_customers"],
    }
    out.append(rows_table(f"clv {currency}: fit", [summary]))
    models = [
        {"model": name, **(model.get("parameters") or {}), "converged": model.get("converged")}
        for name in ("bgnbd", "gamma_gamma")
        if (model := fit.get(name))
    ]
    if models:
        out.append(rows_table(f"clv {currency}: parameters", models))
    holdout = report.get("holdout")
    if holdout is not None:
        title = f"clv {currency}: holdout {holdout['holdout_from']} .. {holdout['holdout_to']}"
        rows = holdout.get("buckets") or [
            {"status": holdout["status"], "reason": holdout.get("reason"), "buckets": 0}
        ]
        out.append(rows_table(title, rows))
    distribution = report.get("clv_distribution")
    if distribution is not None:
        deciles = distribution.get("deciles") or []
        out.append(rows_table(f"clv {currency}: predicted CLV deciles", deciles))
    return out
