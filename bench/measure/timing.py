"""Clocks, warm-up, adaptive sample count and latency statistics.

Timing code takes its clocks as arguments (as torch.utils.benchmark does), so
the stopping rule and the synchronization logic are tested on CPU with fake
clocks, and the real clocks are tested on real work.

Two timers:
- ``HostTimer`` reads a host clock around the call and synchronizes the device
  before reading it again (on CPU the synchronize is a no-op).
- ``EventTimer`` records device events around the call on the current stream and
  reads the device-side elapsed time after the end event completes, so the
  host-side synchronize cost is not counted (CUDA events).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Timer(Protocol):
    def measure(self, fn: Callable[[], Any]) -> float:
        """Run ``fn`` once and return how long its work took, in milliseconds."""
        ...


class HostTimer:
    """Host clock around the call, with a device synchronize before the stop reading."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        synchronize: Callable[[], None] = lambda: None,
    ) -> None:
        self.clock = clock
        self.synchronize = synchronize

    def measure(self, fn: Callable[[], Any]) -> float:
        self.synchronize()  # nothing queued from before may leak into this interval
        start = self.clock()
        fn()
        self.synchronize()
        return (self.clock() - start) * 1e3


class Event(Protocol):
    def record(self) -> None: ...

    def synchronize(self) -> None: ...

    def elapsed_time(self, end: Any) -> float: ...


class EventTimer:
    """Device events around the call; ``make_event`` is ``torch.cuda.Event(enable_timing=True)`` on CUDA."""

    def __init__(self, make_event: Callable[[], Event]) -> None:
        self.make_event = make_event

    def measure(self, fn: Callable[[], Any]) -> float:
        start, end = self.make_event(), self.make_event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))


def timer_for(device: Any) -> Timer:
    """The right timer for a device: CUDA events on the current stream on CUDA, perf_counter on CPU."""
    if getattr(device, "is_cuda", False):
        import torch

        torch_device = torch.device(device.torch_name)

        def make_event() -> Event:
            with torch.cuda.device(torch_device):
                return torch.cuda.Event(enable_timing=True)

        return EventTimer(make_event)
    return HostTimer()


@dataclass(frozen=True)
class SamplingPolicy:
    """When to stop sampling: at least ``min_samples``, then until the 95% CI
    half-width of the median is within ``target_rel_ci`` of it, or the budget is spent."""

    min_samples: int = 10
    max_samples: int = 100_000
    target_rel_ci: float = 0.02
    time_budget_s: float = 3.0
    warmup_s: float = 0.3
    warmup_min_iters: int = 2

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise ValueError("min_samples must be >= 1")
        if self.max_samples < self.min_samples:
            raise ValueError("max_samples must be >= min_samples")
        if self.time_budget_s <= 0:
            raise ValueError("time budget must be > 0 seconds")


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


@dataclass
class Sampled:
    """Raw samples of one cell and why sampling stopped."""

    latencies_ms: list[float] = field(default_factory=list)
    warmup_ms: list[float] = field(default_factory=list)
    stop_reason: str = ""


def sample_adaptively(
    measure_once: Callable[[], float],
    policy: SamplingPolicy,
    wall: Callable[[], float] = time.monotonic,
    on_timed_start: Callable[[], None] = lambda: None,
) -> Sampled:
    """Warm up, then sample until the median is precise enough or the budget is spent.

    ``measure_once`` runs the workload once and returns its latency in ms;
    ``wall`` is the host clock that bounds warm-up and budget (injectable for tests);
    ``on_timed_start`` runs between warm-up and the first timed sample (where the
    runner reads the GPU's clock and temperature).
    The precision check runs every ~10% more samples so it stays cheap at high counts.
    """
    result = Sampled()
    start = wall()
    while len(result.warmup_ms) < policy.warmup_min_iters or wall() - start < policy.warmup_s:
        result.warmup_ms.append(measure_once())
        if wall() - start >= policy.time_budget_s:
            break
    on_timed_start()
    start = wall()
    next_check = policy.min_samples
    while True:
        result.latencies_ms.append(measure_once())
        n = len(result.latencies_ms)
        if n >= policy.max_samples:
            result.stop_reason = "max_samples"
            break
        if n < policy.min_samples:
            continue
        if wall() - start >= policy.time_budget_s:
            result.stop_reason = "time_budget"
            break
        if n >= next_check:
            if relative_ci_halfwidth(result.latencies_ms) <= policy.target_rel_ci:
                result.stop_reason = "converged"
                break
            next_check = n + max(1, n // 10)
    return result


@dataclass(frozen=True)
class LatencyStats:
    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    iqr_over_median: float
    ci_rel_halfwidth: float

    @property
    def noisy(self) -> bool:
        """torch.utils.benchmark's rule: spread (IQR) above 10% of the median."""
        return self.iqr_over_median > 0.10


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
