"""``crm``: status, import, export, erase, replay, rescore and reports against the running
system (its REST APIs and Kafka). ``crm --help`` lists every command; each takes ``--json``."""

from __future__ import annotations

import inspect
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crmctl import kafka_ops, reports
from crmctl.client import Api, CrmError
from crmctl.clv_report import clv_tables
from crmctl.config import SERVICES, resolve
from crmctl.context import api_of, target_of
from crmctl.groups import campaigns_app, deadletters_app, segments_app
from crmctl.keys import keys_app
from crmctl.output import JsonFlag, console, emit, errors, fails_cleanly, kv_table

app = typer.Typer(
    help="Operate the headless CRM from a terminal: it talks to the services' REST APIs and Kafka.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
import_app = typer.Typer(help="Bulk imports through ingest.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(segments_app, name="segments")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(keys_app, name="keys")

#: rows per page when reading an import job's rejected and warned rows
IMPORT_PAGE = 1000


def _url_option(service: str) -> Any:
    return typer.Option(
        f"--{service}-url",
        help=f"base URL of {service} (env CRM_{service.upper()}_URL; default "
        f"http://127.0.0.1:${service.upper()}_PORT, i.e. what `make run` uses)",
    )


def _with_url_options(func: Callable[..., None]) -> Callable[..., None]:
    """``func`` (which takes ``urls``) as a callback with one ``--<service>-url`` option per
    service of the manifest, collected into ``urls``."""
    signature = inspect.signature(func, eval_str=True)
    names = {service: f"{service.replace('-', '_')}_url" for service in SERVICES}
    url_params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, _url_option(service)],
        )
        for service, name in names.items()
    ]
    params = list(signature.parameters.values())
    ctx, rest = params[0], [p for p in params[1:] if p.name != "urls"]
    keyword_rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest]

    def callback(ctx: typer.Context, **options: Any) -> None:
        urls = {service: options.pop(name) for service, name in names.items()}
        func(ctx, urls=urls, **options)

    callback.__name__ = func.__name__
    callback.__doc__ = func.__doc__
    callback.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[ctx, *url_params, *keyword_rest]
    )
    return callback


@app.callback()
@_with_url_options
def root(
    ctx: typer.Context,
    urls: dict[str, str | None],
    api_key: Annotated[
        str | None,
        typer.Option(
            help="X-API-Key (env CRM_API_KEY; default: $CRM_DATA_DIR/api_key, var/api_key)"
        ),
    ] = None,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            help="Kafka (env KAFKA_BOOTSTRAP_SERVERS; default 127.0.0.1:$CRM_BROKER_PORT)"
        ),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="topic name prefix (env CRM_TOPIC_NAMESPACE)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds per HTTP request")] = 60.0,
) -> None:
    ctx.obj = resolve(
        urls=urls,
        api_key=api_key,
        bootstrap_servers=bootstrap_servers,
        namespace=namespace,
        timeout=timeout,
    )


def _service_status(api: Api, service: str) -> dict[str, Any]:
    row: dict[str, Any] = {"service": service, "url": api.target.urls[service]}
    try:
        ready = api.request("GET", service, "/readyz")
    except CrmError as exc:
        return {**row, "up": False, "ready": False, "error": str(exc)}
    row.update(up=True, ready=ready.status_code == 200, checks=ready.json().get("checks"))
    metrics = api.request("GET", service, "/metrics")
    pending = 0.0
    if metrics.status_code == 200:
        for family in text_string_to_metric_families(metrics.text):
            if family.name == "crm_outbox_pending":
                pending += sum(s.value for s in family.samples)
    row["outbox_pending"] = int(pending)
    return row


@app.command()
@fails_cleanly
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Services (up, ready, outbox backlog), consumer lag per group and dead letters.

    Exits 1 when a service is down or not ready, or the broker cannot be read."""
    target = target_of(ctx)
    with api_of(ctx) as api:
        services = [_service_status(api, s) for s in SERVICES]
    result: dict[str, Any] = {"services": services, "consumer_lag": None, "dead_letters": None}
    broker_error = None
    try:
        lag = kafka_ops.consumer_lag(target)
        result["consumer_lag"] = [row.as_dict() for row in lag]
        result["dead_letters"] = len(kafka_ops.read_dead_letters(target))
    except CrmError as exc:
        broker_error = str(exc)
        result["broker_error"] = broker_error
    healthy = all(s["ready"] for s in services) and broker_error is None
    result["healthy"] = healthy

    def render() -> None:
        table = Table(title="services")
        for column in ("service", "url", "up", "ready", "outbox backlog", "checks"):
            table.add_column(column)
        for s in services:
            checks = _failing_checks(s.get("checks") or {})
            table.add_row(
                s["service"], s["url"], _yes(s["up"]), _yes(s["ready"]),
                str(s.get("outbox_pending", "-")), checks or s.get("error", ""),
            )  # fmt: skip
        console.print(table)
        if broker_error:
            console.print(f"[red]broker:[/red] {broker_error}")
            return
        by_group: dict[str, dict[str, int]] = {}
        for row in result["consumer_lag"]:
            group = by_group.setdefault(row["group"], {"partitions": 0, "lag": 0, "unknown": 0})
            group["partitions"] += 1
            if row["lag"] is None:
                group["unknown"] += 1
            else:
                group["lag"] += row["lag"]
        lag_table = Table(title="consumer lag (high watermark - committed offset)")
        for column in ("group", "partitions", "lag", "high watermark unknown"):
            lag_table.add_column(column, justify="left" if column == "group" else "right")
        for name, g in sorted(by_group.items()):
            lag_table.add_row(name, str(g["partitions"]), str(g["lag"]), str(g["unknown"]))
        console.print(lag_table)
        console.print(f"dead letters: {result['dead_letters']} (crm deadletters list)")

    emit(result, as_json, render)
    if not healthy:
        raise typer.Exit(1)


def _failing_checks(checks: dict[str, Any], prefix: str = "") -> str:
    """``all ok``, or the checks that are not ok (consumers are a nested map)."""
    failing = []
    for name, value in checks.items():
        if isinstance(value, dict):
            nested = _failing_checks(value, f"{name}.")
            if nested != "all ok":
                failing.append(nested)
        elif value != "ok":
            failing.append(f"{prefix}{name}={value}")
    return ", ".join(failing) or "all ok"


def _yes(flag: bool) -> str:
    return "[green]yes[/green]" if flag else "[red]no[/red]"


def _data_rows(path: Path) -> int:
    with path.open("rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return max(lines - 1, 0)  # the header


@import_app.command("orders")
@fails_cleanly
def import_orders(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a CSV of orders")],
    encoding: Annotated[
        str | None, typer.Option(help="utf-8 | gbk | gb18030 (default: detect)")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="for rows without one (default CNY)")] = None,
    channel: Annotated[str | None, typer.Option(help="for rows without one")] = None,
    mapping: Annotated[str | None, typer.Option(help="column mapping as JSON")] = None,
    show_rejections: Annotated[int, typer.Option(help="rejected rows to list")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Upload a CSV of orders, follow the import with a progress bar, then summarise it.

    Exits 1 if the import job fails; rejected rows are listed, not a failure."""
    form = {
        k: v
        for k, v in {
            "encoding": encoding,
            "currency": currency,
            "channel": channel,
            "mapping": mapping,
        }.items()
        if v
    }
    total = _data_rows(file)
    with api_of(ctx) as api:
        with file.open("rb") as handle:
            job = api.post(
                "ingest",
                "/v1/imports/orders",
                files={"file": (file.name, handle, "text/csv")},
                data=form,
            )
        job_id = job["job_id"]
        with Progress(
            TextColumn("importing {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("accepted {task.fields[accepted]} rejected {task.fields[rejected]}"),
            TimeElapsedColumn(), console=console, disable=as_json, transient=False,
        ) as progress:  # fmt: skip
            task = progress.add_task(file.name, total=total or None, accepted=0, rejected=0)
            while job["status"] in ("queued", "running"):
                time.sleep(0.3)
                job = api.get("ingest", f"/v1/imports/{job_id}", params={"limit": IMPORT_PAGE})
                progress.update(
                    task,
                    completed=job["rows_read"],
                    accepted=job["accepted"],
                    rejected=job["rejected"],
                )
            progress.update(task, completed=job["rows_read"], total=job["rows_read"] or total)
        # the rejected rows and the rows accepted with warnings share the pages: read them all
        rejections = list(job.get("rejections") or [])
        warned_rows = list(job.get("warnings") or [])
        cursor = job.get("next_cursor")
        while cursor:
            more = api.get(
                "ingest", f"/v1/imports/{job_id}", params={"limit": IMPORT_PAGE, "cursor": cursor}
            )
            rejections.extend(more.get("rejections") or [])
            warned_rows.extend(more.get("warnings") or [])
            cursor = more.get("next_cursor")
    job["rejections"] = rejections
    job["warnings"] = warned_rows  # the service's array, every page, unchanged
    job.pop("next_cursor", None)
    notes = _import_notes(job)
    job["notes"] = notes  # the CLI's summary (the service's warnings stay in `warnings`)

    def rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
        table = Table(title=f"{title} (first {min(show_rejections, len(rows))} of {len(rows)})")
        for column in ("row", "order_id", "field", "code", "message"):
            table.add_column(column)
        for row in rows[:show_rejections]:
            for reason in row.get("reasons") or [{}]:
                table.add_row(
                    str(row.get("row")),
                    str(row.get("order_id") or "-"),
                    reason.get("field", ""),
                    reason.get("code", ""),
                    reason.get("message", ""),
                )
        return table

    def render() -> None:
        keys = [
            "job_id",
            "status",
            "filename",
            "encoding",
            "header_format",
            "rows_read",
            "accepted",
            "duplicate",
            "rejected",
            "warned",
            "error",
        ]
        console.print(kv_table("import", job, keys))
        for note in notes:
            console.print(f"[yellow]warning:[/yellow] {note}")
        if rejections:
            console.print(rows_table("rejected rows", rejections))
        if warned_rows:
            console.print(rows_table("rows accepted with fields dropped", warned_rows))

    emit(job, as_json, render)
    if job["status"] == "failed":
        raise typer.Exit(1)


def _codes(rows: list[dict[str, Any]]) -> str:
    """``code xN, ...`` over the rows' reasons, most frequent first."""
    codes: dict[str, int] = {}
    for row in rows:
        for reason in row.get("reasons") or []:
            codes[reason.get("code", "?")] = codes.get(reason.get("code", "?"), 0) + 1
    return ", ".join(f"{code} x{n}" for code, n in sorted(codes.items(), key=lambda kv: -kv[1]))


def _import_notes(job: dict[str, Any]) -> list[str]:
    """The CLI's one-line summaries of what needs a look (``notes`` in ``--json``)."""
    notes = []
    if job.get("duplicate"):
        notes.append(
            f"{job['duplicate']} rows repeated an order version already recorded (skipped)"
        )
    if job.get("rejected"):
        notes.append(f"{job['rejected']} rows rejected: {_codes(job.get('rejections') or [])}")
    if job.get("warned"):
        notes.append(
            f"{job['warned']} rows accepted with a field dropped: "
            f"{_codes(job.get('warnings') or [])}"
        )
    if job.get("rows_read") == 0 and job.get("status") == "completed":
        notes.append("the file held no data rows")
    return notes


@app.command()
@fails_cleanly
def export(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="customer id")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the export to this file")
    ] = None,
    profile_only: Annotated[
        bool, typer.Option("--profile-only", help="only profile's data (no wait for the others)")
    ] = False,
    wait: Annotated[float, typer.Option(help="seconds to wait for every service's part")] = 120.0,
    as_json: JsonFlag = False,
) -> None:
    """Everything held about a customer (data subject access export), as JSON: the complete
    export across the four services (profile asks ingest, segment and campaign over Kafka).

    Exits 1 if a service has not answered within --wait (the partial export is still
    printed, with the services still pending)."""
    with api_of(ctx) as api:
        if profile_only:
            data = api.get("profile", f"/v1/customers/{customer}/export")
        else:
            data = api.post("profile", f"/v1/customers/{customer}/exports")
            deadline = time.monotonic() + wait
            while data.get("status") != "complete" and time.monotonic() < deadline:
                time.sleep(0.5)
                data = api.get("profile", f"/v1/exports/{data['export_id']}")
    pending = sorted(s for s, state in (data.get("services") or {}).items() if state != "done")
    if output is not None:
        output.write_text(
            json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
        emit(
            {"customer_id": customer, "written": str(output), "pending": pending},
            as_json,
            lambda: console.print(f"export of {customer} written to {output}"),
        )
    else:
        emit(data, as_json)
    if pending:
        errors.print(f"[red]error:[/red] no answer within {wait:g} s from: {', '.join(pending)}")
        raise typer.Exit(1)


@app.command()
@fails_cleanly
def erase(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="customer id")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Erase a customer's personal data everywhere (right to be forgotten); irreversible.

    Asks first (on stderr) unless --yes; with --json and no terminal to ask on, refuses with
    exit 2 rather than guess."""
    if not yes and as_json and not sys.stdin.isatty():
        sys.stdout.write(
            json.dumps({"error": "not confirmed: pass --yes (no terminal to ask on)"}) + "\n"
        )
        errors.print("[red]error:[/red] not confirmed: pass --yes (no terminal to ask on)")
        raise typer.Exit(2)
    question = f"Erase customer {customer}? This cannot be undone"
    if not yes and not typer.confirm(question, err=True):
        raise CrmError("not confirmed (pass --yes to skip the question)")
    with api_of(ctx) as api:
        result = api.delete("profile", f"/v1/customers/{customer}")
    emit(result, as_json, lambda: console.print(kv_table(f"erasure of {customer}", result)))


@app.command()
@fails_cleanly
def replay(
    ctx: typer.Context,
    from_seq: Annotated[int | None, typer.Option(help="first sequence number (inclusive)")] = None,
    to_seq: Annotated[int | None, typer.Option(help="last sequence number (inclusive)")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            help="received at or after (ISO 8601 with offset)",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"],
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            help="received before (ISO 8601 with offset)",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"],
        ),
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option(help="order | customer | interaction (repeatable)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-publish ingest's event store (or a range of it) to Kafka; consumers dedupe."""
    body: dict[str, Any] = {
        "from_sequence": from_seq, "to_sequence": to_seq,
        "since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
        "kinds": kind or None,
    }  # fmt: skip
    with api_of(ctx) as api:
        result = api.post(
            "ingest", "/v1/admin/replay", json={k: v for k, v in body.items() if v is not None}
        )
    emit(
        result,
        as_json,
        lambda: console.print(f"queued {result['queued']} events for re-publication"),
    )


@app.command()
@fails_cleanly
def rescore(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Recompute the cut points over everyone now, rescore everyone and publish the changes."""
    with api_of(ctx) as api:
        result = api.post("segment", "/v1/scoring/recompute")
    emit(result, as_json, lambda: console.print(kv_table("rescoring", result)))


@app.command()
@fails_cleanly
def report(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="rfm | lifecycle | funnel | quadrants | regions | clv")
    ],
    png: Annotated[Path | None, typer.Option(help="also write the chart to this PNG file")] = None,
    as_of: Annotated[str | None, typer.Option(help="point in time (ISO 8601 date or time)")] = None,
    level: Annotated[str, typer.Option(help="regions: province | city")] = "province",
    currency: Annotated[str | None, typer.Option(help="clv: ISO 4217 code")] = None,
    holdout_from: Annotated[str | None, typer.Option(help="clv: start of the holdout")] = None,
    holdout_to: Annotated[str | None, typer.Option(help="clv: end of the holdout")] = None,
    as_json: JsonFlag = False,
) -> None:
    """One of segment's reports as tables (and, with --png, a chart; not for clv)."""
    if name == "clv":
        if png is not None:
            raise CrmError("the clv report has no chart: leave out --png")
        clv_params = {"currency": currency, "holdout_from": holdout_from, "holdout_to": holdout_to}
        with api_of(ctx) as api:
            body = api.get(
                "segment", "/v1/reports/clv", params={k: v for k, v in clv_params.items() if v}
            )

        def render_clv() -> None:
            for table in clv_tables(body):
                console.print(table)

        emit(body, as_json, render_clv)
        return
    if name not in reports.REPORTS:
        choices = ", ".join((*reports.REPORTS, "clv"))
        raise CrmError(f"unknown report {name!r}; choose one of {choices}")
    params = {"as_of": as_of, "level": level if name == "regions" else None}
    with api_of(ctx) as api:
        data = api.get(
            "segment", f"/v1/reports/{name}", params={k: v for k, v in params.items() if v}
        )
    if png is not None:
        reports.write_png(data, png)
        data = {**data, "png": str(png)}

    def render() -> None:
        for table in reports.tables(data):
            console.print(table)
        if png is not None:
            console.print(f"chart written to {png}")

    emit(data, as_json, render)


def main() -> None:
    app(prog_name="crm")
