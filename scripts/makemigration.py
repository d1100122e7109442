"""Autogenerate a dated Alembic migration for one service.

usage: python scripts/makemigration.py <service> "<message>"

It upgrades a scratch SQLite database to head, then compares it with the
service's models and writes ``services/<service>/migrations/versions/<date>_<rev>_<slug>.py``.
Review the file before committing it.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    service, message = sys.argv[1], sys.argv[2]
    importlib.import_module(f"services.{service}.models")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/scratch.db"
        cfg = Config()
        cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
        cfg.set_main_option("sqlalchemy.url", url)
        cfg.set_main_option(
            "file_template",
            "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s",
        )
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
