"""The interval methods against published worked examples."""

from __future__ import annotations

import pytest

from services.campaign.stats import newcombe_difference, relative_uplift_interval, wilson


def test_wilson_matches_newcombe_1998_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553, 0.3662
    low, high = wilson(81, 263)  # type: ignore[misc]
    assert low == pytest.approx(0.2553, abs=5e-5)
    assert high == pytest.approx(0.3662, abs=5e-5)
    assert wilson(0, 10)[0] == 0.0  # type: ignore[index]
    assert wilson(0, 0) is None


def test_newcombe_difference_matches_the_paper() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a) 56/70 - 48/80,
    # method 10: 0.0524 to 0.3339
    low, high = newcombe_difference(56, 70, 48, 80)  # type: ignore[misc]
    assert low == pytest.approx(0.0524, abs=5e-4)
    assert high == pytest.approx(0.3339, abs=5e-4)
    assert newcombe_difference(1, 0, 1, 1) is None


def test_relative_uplift_katz_interval() -> None:
    # RR = (20/100)/(10/100) = 2; se = sqrt(1/20-1/100+1/10-1/100) = sqrt(0.13)
    low, high = relative_uplift_interval(20, 100, 10, 100)  # type: ignore[misc]
    import math

    se = math.sqrt(0.13)
    assert low == pytest.approx(2 * math.exp(-1.959964 * se) - 1, rel=1e-6)
    assert high == pytest.approx(2 * math.exp(1.959964 * se) - 1, rel=1e-6)
    assert relative_uplift_interval(0, 100, 10, 100) is None


@pytest.mark.parametrize("n", [1, 7, 29, 1000])
def test_wilson_bounds_are_exact_at_none_and_all_and_hold_the_estimate(n: int) -> None:
    none, every = wilson(0, n), wilson(n, n)
    assert none is not None and every is not None
    assert none[0] == 0.0 and 0.0 < none[1] < 1.0
    assert every[1] == 1.0 and 0.0 < every[0] < 1.0
    for successes in range(0, n + 1, max(1, n // 10)):
        interval = wilson(successes, n)
        assert interval is not None
        assert interval[0] <= successes / n <= interval[1]
