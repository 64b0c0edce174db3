"""Warm-up and the adaptive sample count: sample until the median is known well enough.

The stopping rule (at least ``min_samples``, then until the 95% confidence interval
of the median is within +-2% of it, or the time budget is spent) is the part of
genbench that makes a row's p50 mean the same thing on every machine; the raw
samples are kept, statistics are computed from them afterwards (``stats``).

The time budget is a real bound on a slow model: ``min_samples`` is what a cell
takes when the budget allows it, not a promise that overrides the budget (a model
taking 5 s a call with ``--time-budget 1`` once ran 76 s for one cell). Timed
sampling stops once the budget is spent and it holds ``budget_floor`` samples (or
one, when a single call took the whole budget), saying so in the stop reason
(``budget (4 < min-samples 10)``); warm-up stops at its own time once it has made a
call. The stop reasons: ``converged``, ``time_budget`` (spent after min_samples),
``max_samples``, and ``budget (N < min-samples M)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.measure.stats import relative_ci_halfwidth


@dataclass(frozen=True)
class SamplingPolicy:
    """When to stop sampling: at least ``min_samples``, then until the 95% CI
    half-width of the median is within ``target_rel_ci`` of it, or the budget is spent.

    The budget wins over ``min_samples`` once ``budget_floor`` samples are taken (module
    docstring). Warm-up makes ``warmup_min_iters`` calls when ``warmup_s`` is 0.
    """

    min_samples: int = 10
    max_samples: int = 100_000
    target_rel_ci: float = 0.02
    time_budget_s: float = 3.0
    warmup_s: float = 0.3
    warmup_min_iters: int = 2
    budget_floor: int = 3

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise ValueError("min_samples must be >= 1")
        if self.budget_floor < 1:
            raise ValueError("budget_floor must be >= 1")
        if self.max_samples < self.min_samples:
            raise ValueError("max_samples must be >= min_samples")
        if self.time_budget_s <= 0:
            raise ValueError("time budget must be > 0 seconds")


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
    while True:
        result.warmup_ms.append(measure_once())
        elapsed = wall() - start
        if elapsed >= policy.warmup_s and (
            policy.warmup_s > 0 or len(result.warmup_ms) >= policy.warmup_min_iters
        ):
            break  # its own time is spent (at least one call made), or its calls are made when it has none
        if elapsed >= policy.time_budget_s:
            break  # warmup_min_iters calls of a slow model must not take more than the whole budget
    on_timed_start()
    start = wall()
    next_check = policy.min_samples
    longest_call_s = 0.0
    while True:
        before = wall()
        result.latencies_ms.append(measure_once())
        now = wall()
        longest_call_s = max(longest_call_s, now - before)
        n = len(result.latencies_ms)
        if n >= policy.max_samples:
            result.stop_reason = "max_samples"
            break
        spent = now - start >= policy.time_budget_s
        if n < policy.min_samples:
            if spent and (n >= policy.budget_floor or longest_call_s >= policy.time_budget_s):
                result.stop_reason = f"budget ({n} < min-samples {policy.min_samples})"
                break
            continue
        if spent:
            result.stop_reason = "time_budget"
            break
        if n >= next_check:
            if relative_ci_halfwidth(result.latencies_ms) <= policy.target_rel_ci:
                result.stop_reason = "converged"
                break
            next_check = n + max(1, n // 10)
    return result
