"""The house's walls: no service imports another, shared/ imports no service, and neither
imports the development tooling (devtools/: make run's supervisor, the embedded broker,
test helpers) or the operator's command (crmctl/), which the production image leaves out."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared import manifest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offending(folder: Path, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        hits = sorted(
            m
            for m in imported_modules(path)
            if any(m == f or m.startswith(f + ".") for f in forbidden)
        )
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    return bad


def test_shared_imports_no_service_and_no_tooling() -> None:
    assert offending(ROOT / "shared", ("services", "devtools", "crmctl", "tests")) == {}


@pytest.mark.parametrize("name", manifest.NAMES)
def test_a_service_imports_no_other_service_and_no_tooling(name: str) -> None:
    others = tuple(f"services.{other}" for other in manifest.NAMES if other != name)
    assert offending(ROOT / "services" / name, (*others, "devtools", "crmctl", "tests")) == {}


def test_the_check_sees_an_import() -> None:
    here = imported_modules(Path(__file__))
    assert "shared.manifest" in here and "ast" in here
