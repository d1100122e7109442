"""Business gauges beside the technical metrics: a snapshot each service refreshes from its
own database in a periodic job, served by one collector on ``/metrics``.

The snapshot is replaced whole, so a segment or campaign that disappears stops being
reported (a plain ``Gauge`` would keep its last label set forever), and a scrape never runs
a query: it reads what the last refresh found.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class GaugeFamily:
    """One gauge name with its label names and ``(label values, value)`` samples."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]


class BusinessGauges(Collector):
    """The process's business gauges, by family name, as last refreshed."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeFamily] = {}
        self._lock = threading.Lock()

    def publish(self, families: Iterable[GaugeFamily]) -> None:
        """Replace the named families (others keep their last value)."""
        with self._lock:
            for family in families:
                self._families[family.name] = family

    def clear(self) -> None:
        with self._lock:
            self._families.clear()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = list(self._families.values())
        for family in families:
            metric = GaugeMetricFamily(family.name, family.documentation, labels=family.labels)
            for values, value in family.samples:
                metric.add_metric(list(values), value)
            yield metric


BUSINESS = BusinessGauges()
REGISTRY.register(BUSINESS)


def refresh_seconds() -> float:
    """How often a service recomputes its business gauges (``CRM_BUSINESS_GAUGES_SECONDS``)."""
    return float(os.environ.get("CRM_BUSINESS_GAUGES_SECONDS", "30"))
