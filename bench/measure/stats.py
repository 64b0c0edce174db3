"""Latency statistics of a cell's raw samples, and the distribution-free interval of their median."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bench.core.columns import RowPart


def median_ci(samples: list[float] | np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    Ranks ``n/2 -+ z*sqrt(n)/2`` (binomial normal approximation), clamped to the data.
    """
    data = np.sort(np.asarray(samples, dtype=float))
    n = len(data)
    if n == 0:
        return (math.nan, math.nan)
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return (float(data[lo]), float(data[hi]))


def relative_ci_halfwidth(samples: list[float] | np.ndarray) -> float:
    lo, hi = median_ci(samples)
    med = float(np.median(samples))
    return math.inf if med <= 0 else (hi - lo) / 2 / med


@dataclass(frozen=True)
class LatencyStats(RowPart):
    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    iqr_over_median: float
    ci_rel_halfwidth: float

    #: the cells-table columns this part fills
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "n_samples", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean",
        "latency_ms_std", "latency_ms_min", "latency_ci95_rel", "noisy",
    )  # fmt: skip

    @property
    def noisy(self) -> bool:
        """torch.utils.benchmark's rule: spread (IQR) above 10% of the median."""
        return self.iqr_over_median > 0.10

    def columns(self) -> dict[str, Any]:
        return {
            "n_samples": self.n,
            "latency_ms_p50": self.p50,
            "latency_ms_p90": self.p90,
            "latency_ms_p99": self.p99,
            "latency_ms_mean": self.mean,
            "latency_ms_std": self.std,
            "latency_ms_min": self.min,
            "latency_ci95_rel": self.ci_rel_halfwidth,
            "noisy": self.noisy,
        }


def summarize(latencies_ms: list[float]) -> LatencyStats:
    if not latencies_ms:
        raise ValueError("no samples to summarize")
    data = np.asarray(latencies_ms, dtype=float)
    q25, p50, q75, p90, p99 = np.percentile(data, [25, 50, 75, 90, 99])
    return LatencyStats(
        n=len(data),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        mean=float(data.mean()),
        std=float(statistics.stdev(latencies_ms)) if len(data) > 1 else 0.0,
        min=float(data.min()),
        iqr_over_median=float((q75 - q25) / p50) if p50 > 0 else math.inf,
        ci_rel_halfwidth=relative_ci_halfwidth(data),
    )
