"""``crm segments``, ``crm campaigns`` and ``crm deadletters``: list, show and act."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from crmctl import kafka_ops
from crmctl.client import CrmError
from crmctl.context import api_of, target_of
from crmctl.output import JsonFlag, console, emit, fails_cleanly, kv_table
from crmctl.reports import rows_table

segments_app = typer.Typer(help="Custom segments (segment service).", no_args_is_help=True)
campaigns_app = typer.Typer(help="Campaigns (campaign service).", no_args_is_help=True)
deadletters_app = typer.Typer(
    help="Records a consumer gave up on (topic crm.deadletter.v1).", no_args_is_help=True
)

Limit = Annotated[int, typer.Option(help="at most this many")]


@segments_app.command("list")
@fails_cleanly
def segments_list(ctx: typer.Context, limit: Limit = 1000, as_json: JsonFlag = False) -> None:
    """Every custom segment with its rule and member count."""
    with api_of(ctx) as api:
        items = api.pages("segment", "/v1/segments", limit=limit)
    rows = [
        {k: s.get(k) for k in ("segment_id", "name", "member_count", "created_at")} for s in items
    ]
    emit(items, as_json, lambda: console.print(rows_table("segments", rows)))


@segments_app.command("show")
@fails_cleanly
def segments_show(
    ctx: typer.Context,
    segment_id: str,
    members: Annotated[int, typer.Option(help="list this many member ids")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """One segment: its rule, size and (with --members N) the first members."""
    with api_of(ctx) as api:
        segment = api.get("segment", f"/v1/segments/{segment_id}")
        if members:
            segment["members"] = api.pages(
                "segment", f"/v1/segments/{segment_id}/members", limit=members
            )

    def render() -> None:
        console.print(kv_table(f"segment {segment_id}", segment))

    emit(segment, as_json, render)


_CAMPAIGN_COLUMNS = (
    "campaign_id",
    "name",
    "purpose",
    "status",
    "channels",
    "holdout_share",
    "launched_at",
)


@campaigns_app.command("list")
@fails_cleanly
def campaigns_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="only campaigns in this status")] = None,
    limit: Limit = 100,
    as_json: JsonFlag = False,
) -> None:
    """Campaigns, newest first."""
    with api_of(ctx) as api:
        items = api.pages("campaign", "/v1/campaigns", limit=limit, status=status)
    rows = [{k: c.get(k) for k in _CAMPAIGN_COLUMNS} for c in items]
    emit(items, as_json, lambda: console.print(rows_table("campaigns", rows)))


@campaigns_app.command("show")
@fails_cleanly
def campaigns_show(ctx: typer.Context, campaign_id: str, as_json: JsonFlag = False) -> None:
    """One campaign: audience, channels, content, schedule, holdout, status."""
    with api_of(ctx) as api:
        campaign = api.get("campaign", f"/v1/campaigns/{campaign_id}")
    emit(campaign, as_json, lambda: console.print(kv_table(f"campaign {campaign_id}", campaign)))


@campaigns_app.command("launch")
@fails_cleanly
def campaigns_launch(
    ctx: typer.Context,
    campaign_id: str,
    background: Annotated[
        bool, typer.Option(help="launch in the background and follow it (large audiences)")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Launch a campaign now (or resume an interrupted launch); nobody gets a second message."""
    with api_of(ctx) as api:
        if background:
            result = api.post(
                "campaign", f"/v1/campaigns/{campaign_id}/launch", params={"wait": "false"}
            )
            while result.get("in_progress"):
                time.sleep(0.5)
                result = api.get("campaign", f"/v1/campaigns/{campaign_id}/launch")
        else:
            result = api.post("campaign", f"/v1/campaigns/{campaign_id}/launch")
    emit(result, as_json, lambda: console.print(kv_table(f"launch of {campaign_id}", result)))


@campaigns_app.command("report")
@fails_cleanly
def campaigns_report(ctx: typer.Context, campaign_id: str, as_json: JsonFlag = False) -> None:
    """Reach, receipts and conversion of treatment vs holdout, with uplift."""
    with api_of(ctx) as api:
        data = api.get("campaign", f"/v1/campaigns/{campaign_id}/report")
    emit(data, as_json, lambda: render_campaign_report(data))


def render_campaign_report(data: dict[str, Any]) -> None:
    reach = ["status", "final", "window_closes_at", "targeted", "holdout", "sent", "deferred",
             "delivered", "failed", "opened", "clicked", "unsubscribed", "excluded"]  # fmt: skip
    console.print(kv_table(f"campaign {data['campaign_id']}", data, reach))
    groups = Table(title=f"conversion in the window (currency {data.get('currency') or '-'})")
    for column in (
        "arm",
        "customers",
        "converted",
        "rate",
        "95% interval",
        "revenue",
        "per customer",
    ):
        groups.add_column(column, justify="left" if column == "arm" else "right")
    for arm in ("treatment", "control"):
        g = data.get(arm) or {}
        interval = g.get("conversion_rate_ci95")
        groups.add_row(
            arm, str(g.get("customers")), str(g.get("converted")), _percent(g.get("conversion_rate")),
            f"{_percent(interval[0])} - {_percent(interval[1])}" if interval else "-",
            str(g.get("revenue")), str(g.get("revenue_per_customer") or "-"),
        )  # fmt: skip
    console.print(groups)
    uplift = data.get("uplift") or {}
    absolute, interval = uplift.get("absolute"), uplift.get("absolute_ci95")
    console.print(
        f"uplift: {_percent(absolute)} points"
        + (f" (95% interval {_percent(interval[0])} - {_percent(interval[1])})" if interval else "")
        + f"; incremental revenue per customer {uplift.get('incremental_revenue_per_customer') or '-'}"
    )


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


@deadletters_app.command("list")
@fails_cleanly
def deadletters_list(
    ctx: typer.Context,
    origin_topic: Annotated[str | None, typer.Option(help="only those from this topic")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every dead letter: where it came from, which consumer gave up, and why."""
    records = kafka_ops.read_dead_letters(target_of(ctx))
    rows = [r.summary() for r in records if _from_topic(r, origin_topic, target_of(ctx).namespace)]
    compact = [
        {
            "id": r["event_id"][:8],
            "origin": r["origin"],
            "group": r["consumer_group"],
            "error": f"{r['error_type']}: {str(r['error'])[:70]}",
            "failed_at": str(r["failed_at"])[:19],
        }
        for r in rows
    ]
    emit(rows, as_json, lambda: console.print(rows_table(f"dead letters ({len(rows)})", compact)))


def _from_topic(record: kafka_ops.DeadLetterRecord, topic: str | None, namespace: str) -> bool:
    return topic is None or record.data.get("origin_topic") in (topic, namespace + topic)


@deadletters_app.command("show")
@fails_cleanly
def deadletters_show(
    ctx: typer.Context,
    dead_letter: Annotated[
        str, typer.Argument(help="event id (or a unique prefix), or partition:offset")
    ],
    as_json: JsonFlag = False,
) -> None:
    """One dead letter with the original record (key and value), read from its origin topic
    (the dead letter itself carries neither: they may hold personal data)."""
    target = target_of(ctx)
    record = kafka_ops.find_dead_letter(kafka_ops.read_dead_letters(target), dead_letter)
    try:
        _, key, value = kafka_ops.original_record(target, record)
        original: dict[str, Any] = {"key": _text(key), "value": _text(value)}
    except CrmError as exc:  # past retention: the dead letter alone still says what and why
        original = {"unavailable": str(exc)}
    data = {"position": f"{record.partition}:{record.offset}", **record.event, "original": original}
    emit(
        data,
        as_json,
        lambda: console.print(
            kv_table(
                f"dead letter {record.event_id}",
                {
                    **record.summary(),
                    **record.data,
                    **{f"original {k}": v for k, v in original.items()},
                },
            )
        ),
    )


def _text(raw: bytes | None) -> str | None:
    """Bytes as UTF-8 text, or base64 when they are not UTF-8."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


@deadletters_app.command("redrive")
@fails_cleanly
def deadletters_redrive(
    ctx: typer.Context,
    dead_letters: Annotated[
        list[str] | None, typer.Argument(help="event ids (or unique prefixes)")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="every dead letter (of --origin-topic)")
    ] = False,
    origin_topic: Annotated[
        str | None, typer.Option(help="with --all: only those from this topic")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """After a fix, write dead letters' original records back to their topics.

    Consumers are idempotent, so re-driving a record twice has its effect once. The dead
    letter stays in its topic (a log is never edited)."""
    target = target_of(ctx)
    records = kafka_ops.read_dead_letters(target)
    if all_:
        chosen = [r for r in records if _from_topic(r, origin_topic, target.namespace)]
    elif dead_letters:
        chosen = [kafka_ops.find_dead_letter(records, wanted) for wanted in dead_letters]
    else:
        raise CrmError("name the dead letters to re-drive, or pass --all")
    results = kafka_ops.redrive(target, chosen)
    emit(
        results, as_json, lambda: console.print(rows_table(f"re-driven ({len(results)})", results))
    )
