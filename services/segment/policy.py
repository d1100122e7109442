"""The scoring policy: every threshold the scores depend on, versioned by the service.

Pure data (pydantic), no I/O. The default is the product's documented default.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.schemas import RequestModel

#: The named RFM segments, in the order the default table checks them.
RFM_SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose_them",
    "hibernating",
    "lost",
)

LIFECYCLE_STAGES = ("prospect", "new", "active", "silent", "sleeping", "lost")
VALUE_QUADRANTS = ("premium", "potential", "problem", "pending")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Breakpoints(_Model):
    """How one of R, F, M becomes a 1..5 score."""

    method: Literal["quintiles", "fixed"] = "quintiles"
    breakpoints: list[Decimal] | None = Field(
        None,
        description="four ascending values (fixed method). F and M: a value above the k-th "
        "breakpoint scores k+1. R (days): a recency above the k-th breakpoint scores 5-k.",
    )

    @model_validator(mode="after")
    def _check(self) -> Breakpoints:
        if self.method == "fixed":
            points = self.breakpoints or []
            if len(points) != 4 or any(b > a for a, b in zip(points[1:], points, strict=False)):
                raise ValueError("fixed breakpoints need four ascending values")
        return self


class LifecycleThresholds(_Model):
    active_days: int = Field(30, ge=0, description="recency <= this: active (or new)")
    silent_days: int = Field(90, ge=0, description="recency <= this: silent")
    sleeping_days: int = Field(180, ge=0, description="recency <= this: sleeping; above: lost")

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleThresholds:
        if not self.active_days <= self.silent_days <= self.sleeping_days:
            raise ValueError("lifecycle thresholds must be ascending")
        return self


class QuadrantBreakpoints(_Model):
    """High F / high M means strictly above the breakpoint (the median by default)."""

    method: Literal["median", "fixed"] = "median"
    frequency: Decimal | None = None
    monetary: Decimal | None = None

    @model_validator(mode="after")
    def _check(self) -> QuadrantBreakpoints:
        if self.method == "fixed" and (self.frequency is None or self.monetary is None):
            raise ValueError("fixed quadrant breakpoints need frequency and monetary")
        return self


class SegmentCell(_Model):
    """One row of the RFM segment table: R score range and FM score range, both inclusive."""

    segment: str = Field(min_length=1, max_length=30)
    r: tuple[int, int]
    fm: tuple[int, int]


#: The documented default table. FM = (F + M + 1) // 2 (their mean, halves rounded up).
#: It covers the 5 x 5 grid of R x FM exactly once.
DEFAULT_SEGMENT_TABLE = (
    SegmentCell(segment="champions", r=(5, 5), fm=(4, 5)),
    SegmentCell(segment="loyal", r=(3, 4), fm=(4, 5)),
    SegmentCell(segment="potential_loyalists", r=(4, 5), fm=(2, 3)),
    SegmentCell(segment="new", r=(5, 5), fm=(1, 1)),
    SegmentCell(segment="promising", r=(4, 4), fm=(1, 1)),
    SegmentCell(segment="need_attention", r=(3, 3), fm=(3, 3)),
    SegmentCell(segment="about_to_sleep", r=(3, 3), fm=(1, 2)),
    SegmentCell(segment="at_risk", r=(1, 2), fm=(3, 4)),
    SegmentCell(segment="cant_lose_them", r=(1, 2), fm=(5, 5)),
    SegmentCell(segment="hibernating", r=(2, 2), fm=(1, 2)),
    SegmentCell(segment="lost", r=(1, 1), fm=(1, 2)),
)


class ScoringPolicy(_Model, RequestModel):
    """Everything the scores depend on. Each change is kept as a new version."""

    window_days: int = Field(365, ge=1, description="the RFM window: F and M count orders in it")
    timezone: str = Field("Asia/Shanghai", description="days are counted in this timezone")
    recency: Breakpoints = Breakpoints()
    frequency: Breakpoints = Breakpoints()
    monetary: Breakpoints = Breakpoints()
    lifecycle: LifecycleThresholds = LifecycleThresholds()
    quadrants: QuadrantBreakpoints = QuadrantBreakpoints()
    purchase_buckets: list[int] = Field(
        [1, 2, 3, 4], description="lower bounds of the purchase-count buckets (1, 2, 3, 4+)"
    )
    funnel_buckets: list[int] = Field(
        [1, 2, 3, 5], description="lower bounds of the funnel buckets (1, 2, 3-4, 5+)"
    )
    segment_table: list[SegmentCell] = Field(default_factory=lambda: list(DEFAULT_SEGMENT_TABLE))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("purchase_buckets", "funnel_buckets")
    @classmethod
    def _buckets(cls, value: list[int]) -> list[int]:
        if not value or value[0] != 1 or any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("buckets are strictly ascending lower bounds starting at 1")
        return value

    @field_validator("segment_table")
    @classmethod
    def _covers_grid(cls, value: list[SegmentCell]) -> list[SegmentCell]:
        for r in range(1, 6):
            for fm in range(1, 6):
                if not any(c.r[0] <= r <= c.r[1] and c.fm[0] <= fm <= c.fm[1] for c in value):
                    raise ValueError(f"the segment table leaves R={r}, FM={fm} unnamed")
        return value


DEFAULT_POLICY = ScoringPolicy()
