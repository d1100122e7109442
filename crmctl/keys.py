"""``crm keys``: the managed API keys (profile is their admin home; scope ``keys:admin``)."""

from __future__ import annotations

from typing import Annotated

import typer

from crmctl.context import api_of
from crmctl.output import JsonFlag, console, emit, fails_cleanly, kv_table
from crmctl.reports import rows_table

keys_app = typer.Typer(help="Managed API keys (profile; needs keys:admin).", no_args_is_help=True)

_COLUMNS = ("key_id", "name", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at")


@keys_app.command("list")
@fails_cleanly
def keys_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every managed key (never a secret)."""
    with api_of(ctx) as api:
        items = api.pages("profile", "/v1/api-keys")
    rows = [
        {k: ", ".join(v) if isinstance(v := key.get(k), list) else v for k in _COLUMNS}
        for key in items
    ]
    emit(items, as_json, lambda: console.print(rows_table("API keys", rows)))


@keys_app.command("create")
@fails_cleanly
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="what the key is for")],
    scope: Annotated[list[str], typer.Option(help="repeatable, e.g. --scope ingest:write")],
    expires_at: Annotated[str | None, typer.Option(help="ISO 8601 with offset")] = None,
    rate_limit: Annotated[str | None, typer.Option(help='e.g. "600/minute" or "unlimited"')] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key; its secret is printed this once only."""
    body = {"name": name, "scopes": scope, "expires_at": expires_at, "rate_limit": rate_limit}
    with api_of(ctx) as api:
        key = api.post(
            "profile", "/v1/api-keys", json={k: v for k, v in body.items() if v is not None}
        )
    emit(
        key,
        as_json,
        lambda: console.print(kv_table("new API key (the secret is shown only now)", key)),
    )


@keys_app.command("rotate")
@fails_cleanly
def keys_rotate(
    ctx: typer.Context,
    key_id: str,
    grace_seconds: Annotated[int, typer.Option(help="the old secret keeps working this long")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """A new secret for the same key (printed this once only)."""
    with api_of(ctx) as api:
        key = api.post(
            "profile", f"/v1/api-keys/{key_id}/rotate", json={"grace_seconds": grace_seconds}
        )
    emit(key, as_json, lambda: console.print(kv_table(f"key {key_id} rotated", key)))


@keys_app.command("revoke")
@fails_cleanly
def keys_revoke(ctx: typer.Context, key_id: str, as_json: JsonFlag = False) -> None:
    """Revoke a key: every service refuses it from then on."""
    with api_of(ctx) as api:
        key = api.post("profile", f"/v1/api-keys/{key_id}/revoke")
    emit(key, as_json, lambda: console.print(kv_table(f"key {key_id} revoked", key or {})))


@keys_app.command("audit")
@fails_cleanly
def keys_audit(ctx: typer.Context, key_id: str, as_json: JsonFlag = False) -> None:
    """Who created, rotated or revoked a key, and when."""
    with api_of(ctx) as api:
        entries = api.get("profile", f"/v1/api-keys/{key_id}/audit")
    emit(
        entries, as_json, lambda: console.print(rows_table(f"audit of {key_id}", entries["audit"]))
    )
