from __future__ import annotations

import math

import numpy as np
import pytest

from bench.measure.stats import median_ci, summarize


def test_median_ci_covers_the_median_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(2)
    small = rng.normal(10, 1, 20)
    large = rng.normal(10, 1, 2000)
    lo_s, hi_s = median_ci(small)
    lo_l, hi_l = median_ci(large)
    assert lo_s <= np.median(small) <= hi_s
    assert lo_l <= np.median(large) <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3


def test_median_ci_has_nominal_coverage() -> None:
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(400):
        lo, hi = median_ci(rng.exponential(1.0, 50))
        hits += lo <= math.log(2) <= hi  # true median of Exp(1)
    assert 0.90 <= hits / 400 <= 0.99


def test_summarize_statistics() -> None:
    data = [float(x) for x in range(1, 101)]
    stats = summarize(data)
    assert stats.n == 100
    assert stats.p50 == pytest.approx(50.5)
    assert stats.p90 == pytest.approx(90.1)
    assert stats.p99 == pytest.approx(99.01)
    assert stats.mean == pytest.approx(50.5)
    assert stats.min == 1.0
    assert stats.std == pytest.approx(np.std(data, ddof=1))
    assert stats.noisy  # IQR/median ~ 0.98


def test_noisy_flag_threshold() -> None:
    assert not summarize([10.0, 10.1, 10.2, 10.3, 9.9, 9.8]).noisy
    assert summarize([10.0, 12.0, 8.0, 11.5, 8.5, 10.0]).noisy


def test_summarize_rejects_empty() -> None:
    with pytest.raises(ValueError):
        summarize([])
