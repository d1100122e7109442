"""One figure of a bench run, and where the benches put them for `make bench`'s table.

Every bench script records its headline figures with :func:`record` when it runs with
``--figures PATH`` (``bench/run_all.py`` passes it); without it nothing is written and the
scripts print as before. A figure is the value, the baseline measured in the same run (so a
reader sees the ratio, which a loaded machine moves far less than the value), and the target
it is held to, stated on the value or on the ratio.
"""

from __future__ import annotations

import json
import operator
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: set by the bench scripts' ``--figures`` option; None: do not record
_SINK: Path | None = None

_OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}


@dataclass
class Figure:
    bench: str  # the script, e.g. "profile"
    name: str  # what is measured, e.g. "consumer events/s (wall)"
    value: float
    unit: str
    baseline_name: str | None = None
    baseline: float | None = None
    # e.g. ">= 10000" on the value, or "ratio >= 0.25" on value / baseline
    target: str | None = None
    # for the plots: the offered load (requests/s) this figure was measured at
    load: float | None = None
    size: int | None = None  # customers / events / orders the bench ran over
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]

    def verdict(self) -> str:
        """``pass``, ``short`` or ``-`` (no target, or a target on a missing baseline)."""
        if not self.target:
            return "-"
        words = self.target.split()
        on_ratio = words[0] == "ratio"
        op, bound = (words[1], words[2]) if on_ratio else (words[0], words[1])
        subject = self.ratio if on_ratio else self.value
        if subject is None:
            return "-"
        return "pass" if _OPS[op](subject, float(bound)) else "short"


def use_sink(path: str | os.PathLike[str] | None) -> None:
    """Where :func:`record` appends (JSON lines); None turns recording off."""
    global _SINK
    _SINK = Path(path) if path else None


def record(figure: Figure) -> None:
    """Append one figure to the sink given by ``--figures`` (if any)."""
    if _SINK is None:
        return
    with _SINK.open("a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(figure), ensure_ascii=False) + "\n")


def load_figures(path: Path) -> list[Figure]:
    if not path.exists():
        return []
    return [Figure(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB): ``VmHWM``, the high-water mark of its own
    address space. ``ru_maxrss`` is not: Linux carries the parent's peak into a child that
    subprocess started with vfork, so a bench child of a large parent reported the parent's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
