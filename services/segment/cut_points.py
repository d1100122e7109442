"""Cut points: the thresholds the batch path computes over every scored customer and the
per-event path applies until the next batch.

A quintile score is "how many cut points lie below the value", so applying the batch's cut
points to one customer gives exactly the score the batch gives it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from services.segment.local_days import recency_days
from services.segment.money import MONEY_SCALE
from services.segment.policy import Breakpoints, ScoringPolicy

#: the aggregate columns (``scoring.AGGREGATE_COLUMNS``) the cut points are computed from
_COMPUTED_FROM = ("order_count", "last_order_at", "frequency", "monetary_e4")


@dataclass(frozen=True)
class CutPoints:
    """The thresholds the batch computed, applied to every event until the next batch.

    ``recency`` in days, ``frequency`` in orders, ``monetary`` in 1/10,000 units; four
    ascending values each (empty when nobody is scored yet: then everyone scores as the
    only customer would: R 5, F 1, M 1). The quadrant breakpoints are the medians.
    """

    policy_version: int
    as_of: datetime
    population: int
    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]
    quadrant_frequency: float | None
    quadrant_monetary: float | None

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["as_of"] = self.as_of.isoformat()
        for name in ("recency", "frequency", "monetary"):
            body[name] = list(body[name])
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CutPoints:
        return cls(
            policy_version=int(body["policy_version"]),
            as_of=datetime.fromisoformat(body["as_of"]),
            population=int(body["population"]),
            recency=tuple(float(v) for v in body["recency"]),
            frequency=tuple(float(v) for v in body["frequency"]),
            monetary=tuple(float(v) for v in body["monetary"]),
            quadrant_frequency=body.get("quadrant_frequency"),
            quadrant_monetary=body.get("quadrant_monetary"),
        )

    @classmethod
    def empty(cls, policy: ScoringPolicy, policy_version: int, as_of: datetime) -> CutPoints:
        """The cut points over nobody (no customer scored yet)."""
        nobody = pd.DataFrame({c: pd.Series([], dtype=object) for c in _COMPUTED_FROM})
        return compute_cut_points(nobody, policy, policy_version, as_of)


_QUINTILES = [0.2, 0.4, 0.6, 0.8]


def _breakpoints(spec: Breakpoints, values: np.ndarray, scale: int = 1) -> tuple[float, ...]:
    if spec.method == "fixed":
        return tuple(float(Decimal(b) * scale) for b in spec.breakpoints or [])
    if len(values) == 0:
        return ()
    return tuple(float(v) for v in np.quantile(values.astype("float64"), _QUINTILES))


def compute_cut_points(
    aggregates: pd.DataFrame, policy: ScoringPolicy, policy_version: int, as_of: datetime
) -> CutPoints:
    """Quintile cut points (or the policy's fixed ones) and quadrant medians over scored customers."""
    scored = aggregates[aggregates["order_count"].astype("int64") > 0]
    recency = recency_days(scored, as_of, policy) if len(scored) else np.array([])
    frequency = scored["frequency"].to_numpy(dtype="float64")
    monetary = scored["monetary_e4"].to_numpy(dtype="float64")
    if policy.quadrants.method == "fixed":
        q_f: float | None = float(policy.quadrants.frequency or 0)
        q_m: float | None = float(Decimal(policy.quadrants.monetary or 0) * MONEY_SCALE)
    elif len(scored):
        q_f, q_m = float(np.median(frequency)), float(np.median(monetary))
    else:
        q_f = q_m = None
    return CutPoints(
        policy_version=policy_version,
        as_of=as_of,
        population=len(scored),
        recency=_breakpoints(policy.recency, recency),
        frequency=_breakpoints(policy.frequency, frequency),
        monetary=_breakpoints(policy.monetary, monetary, MONEY_SCALE),
        quadrant_frequency=q_f,
        quadrant_monetary=q_m,
    )
