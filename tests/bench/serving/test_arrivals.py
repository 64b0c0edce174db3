"""The Poisson schedule: its rate, its exponential gaps, its seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.serving.arrivals import poisson_arrivals


def test_rate_is_the_asked_rate_within_the_poisson_count_s_spread() -> None:
    times = poisson_arrivals(50.0, 200.0, seed=7)
    expected = 50.0 * 200.0
    # a Poisson count of mean 10,000 has sd 100: 4 sd is far outside any seed's luck
    assert abs(len(times) - expected) < 4 * math.sqrt(expected)
    assert times.min() >= 0 and times.max() < 200.0
    assert np.all(np.diff(times) > 0)


def test_gaps_are_exponential() -> None:
    """Kolmogorov-Smirnov against Exp(rate), by hand: D below the 1% critical value 1.63/sqrt(n)."""
    rate = 20.0
    gaps = np.diff(np.concatenate([[0.0], poisson_arrivals(rate, 500.0, seed=3)]))
    n = len(gaps)
    ordered = np.sort(gaps)
    cdf = 1 - np.exp(-rate * ordered)
    d = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert d < 1.63 / math.sqrt(n)
    # memoryless: the coefficient of variation of exponential gaps is 1 (a constant-rate load's is 0)
    assert abs(gaps.std() / gaps.mean() - 1) < 0.05


def test_a_uniform_schedule_fails_the_same_test() -> None:
    """The test above can fail: evenly spaced arrivals at the same rate are far from exponential gaps."""
    rate = 20.0
    gaps = np.full(10_000, 1 / rate)
    cdf = 1 - np.exp(-rate * gaps)
    d = np.max(np.abs(np.arange(1, len(gaps) + 1) / len(gaps) - cdf))
    assert d > 1.63 / math.sqrt(len(gaps))


def test_the_seed_fixes_the_schedule() -> None:
    a, b = poisson_arrivals(10.0, 30.0, seed=1), poisson_arrivals(10.0, 30.0, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, poisson_arrivals(10.0, 30.0, seed=2))


def test_a_long_window_beyond_one_draw_is_covered() -> None:
    times = poisson_arrivals(1.0, 2.0, seed=0)  # a small first chunk: the loop must extend it
    assert np.all(times < 2.0)
    long = poisson_arrivals(1.0, 5000.0, seed=0)
    assert long.max() > 4900


@pytest.mark.parametrize(
    ("rate", "duration"), [(0.0, 1.0), (-1.0, 1.0), (math.inf, 1.0), (1.0, 0.0), (1.0, math.nan)]
)
def test_bad_rates_and_durations_are_refused(rate: float, duration: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        poisson_arrivals(rate, duration, seed=0)
