"""How a command answers: rich for people, one JSON document (``--json``) for scripts."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from crmctl.client import CrmError

console = Console()
errors = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON document (for scripts)")]

F = TypeVar("F", bound=Callable[..., Any])


def emit(data: Any, as_json: bool, render: Callable[[], None] | None = None) -> None:
    """``--json``: the data as JSON on stdout; else ``render()`` (or a pretty print)."""
    if as_json or render is None:
        sys.stdout.write(
            json.dumps(data, ensure_ascii=False, indent=None if as_json else 2, default=str) + "\n"
        )
        sys.stdout.flush()
        return
    render()


def fails_cleanly(fn: F) -> F:
    """A :class:`CrmError` ends the command with its message on stderr and exit code 1 (and,
    under ``--json``, ``{"error": ..., "problem": ...}`` on stdout)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CrmError as exc:
            if kwargs.get("as_json"):
                sys.stdout.write(
                    json.dumps({"error": str(exc), "problem": exc.problem}, default=str) + "\n"
                )
            errors.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
            raise typer.Exit(1) from exc

    return wrapper  # type: ignore[return-value]


def kv_table(title: str, data: dict[str, Any], keys: list[str] | None = None) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in keys or list(data):
        value = data.get(key)
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False, default=str)
        table.add_row(key, "-" if value is None else str(value))
    return table
