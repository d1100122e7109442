"""Confidence intervals for the campaign report (pure).

- A rate's interval: Wilson score interval.
- Absolute uplift (treatment rate - holdout rate): Newcombe's hybrid score interval
  (Newcombe 1998, method 10), built from the two Wilson intervals. Unlike the Wald
  interval it stays inside [-1, 1] and behaves at rates near 0 or 1 and small groups.
- Relative uplift (treatment rate / holdout rate - 1): the Katz log interval of the
  risk ratio, exp(ln RR +- z * sqrt(1/x1 - 1/n1 + 1/x2 - 1/n2)) - 1; undefined (None)
  when either group has no conversion.
All at 95% (z = 1.959964).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion, or None for an empty group."""
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # rounding leaves ~1e-17 where the bound is exactly 0 or 1 (no successes / all of them);
    # the interval always holds the point estimate
    low = 0.0 if successes == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if successes == n else min(1.0, max(p, centre + half))
    return low, high


def newcombe_difference(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for p1 - p2, or None if a group is empty."""
    w1, w2 = wilson(x1, n1, z), wilson(x2, n2, z)
    if w1 is None or w2 is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = w1, w2
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return lower, upper


def relative_uplift_interval(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, float] | None:
    """Katz log interval of p1 / p2 - 1, or None when it is undefined."""
    if n1 <= 0 or n2 <= 0 or x1 <= 0 or x2 <= 0:
        return None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    return math.exp(math.log(ratio) - z * se) - 1, math.exp(math.log(ratio) + z * se) - 1
