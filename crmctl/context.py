"""The target every command of one invocation talks to (set by the root callback)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from crmctl.client import Api
from crmctl.config import Target


def target_of(ctx: typer.Context) -> Target:
    root = ctx.find_root()
    target = root.obj
    assert isinstance(target, Target), "the root callback sets the target"
    return target


@contextmanager
def api_of(ctx: typer.Context) -> Iterator[Api]:
    api = Api(target_of(ctx))
    try:
        yield api
    finally:
        api.close()
