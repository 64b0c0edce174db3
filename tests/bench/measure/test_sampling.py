from __future__ import annotations

import numpy as np
import pytest

from bench.measure.sampling import SamplingPolicy, sample_adaptively
from bench.measure.stats import relative_ci_halfwidth
from tests.bench.measure.fakes import FakeClock


def _fake_workload(clock: FakeClock, latencies_ms: list[float]):
    it = iter(latencies_ms)

    def measure_once() -> float:
        ms = next(it)
        clock.advance(ms / 1e3)
        return ms

    return measure_once


def test_constant_latency_converges_at_min_samples() -> None:
    clock = FakeClock()
    policy = SamplingPolicy(min_samples=10, time_budget_s=100, warmup_s=0.0, warmup_min_iters=2)
    result = sample_adaptively(_fake_workload(clock, [5.0] * 1000), policy, wall=clock)
    assert result.stop_reason == "converged"
    assert len(result.latencies_ms) == 10
    assert len(result.warmup_ms) == 2


def test_noisy_latency_samples_until_the_budget() -> None:
    clock = FakeClock()
    rng = np.random.default_rng(0)
    latencies = list(rng.uniform(1.0, 20.0, size=100_000))
    policy = SamplingPolicy(min_samples=10, time_budget_s=1.0, warmup_s=0.0)
    result = sample_adaptively(_fake_workload(clock, latencies), policy, wall=clock)
    assert result.stop_reason == "time_budget"
    sampled_s = sum(result.latencies_ms) / 1e3
    assert 1.0 <= sampled_s < 1.05  # stopped within one sample of the budget


def test_moderate_noise_stops_once_the_median_is_precise() -> None:
    clock = FakeClock()
    rng = np.random.default_rng(1)
    latencies = list(rng.normal(10.0, 1.0, size=100_000))
    policy = SamplingPolicy(min_samples=10, time_budget_s=1000, warmup_s=0.0, target_rel_ci=0.02)
    result = sample_adaptively(_fake_workload(clock, latencies), policy, wall=clock)
    assert result.stop_reason == "converged"
    assert relative_ci_halfwidth(result.latencies_ms) <= 0.02
    assert len(result.latencies_ms) > 10  # sd 10% needs more than 10 samples for a 2% CI


def test_min_samples_are_taken_even_past_the_budget() -> None:
    clock = FakeClock()
    policy = SamplingPolicy(min_samples=10, time_budget_s=0.01, warmup_s=0.0, warmup_min_iters=1)
    result = sample_adaptively(_fake_workload(clock, [100.0] * 100), policy, wall=clock)
    assert len(result.latencies_ms) == 10


def test_warmup_runs_for_its_time() -> None:
    clock = FakeClock()
    policy = SamplingPolicy(min_samples=3, time_budget_s=10, warmup_s=0.1, warmup_min_iters=2)
    result = sample_adaptively(_fake_workload(clock, [10.0] * 1000), policy, wall=clock)
    assert len(result.warmup_ms) in (10, 11)  # 10 x 10 ms reach 0.1 s, give or take float rounding


def test_timed_start_hook_runs_between_warmup_and_the_first_timed_sample() -> None:
    clock = FakeClock()
    calls: list[int] = []
    workload = _fake_workload(clock, [10.0] * 1000)

    def measure_once() -> float:
        calls.append(0)
        return workload()

    policy = SamplingPolicy(min_samples=3, time_budget_s=10, warmup_s=0.05, warmup_min_iters=2)
    seen_at: list[int] = []
    result = sample_adaptively(
        measure_once, policy, wall=clock, on_timed_start=lambda: seen_at.append(len(calls))
    )
    assert seen_at == [len(result.warmup_ms)]  # once, after every warm-up call and before any timed one


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        SamplingPolicy(min_samples=0)
    with pytest.raises(ValueError):
        SamplingPolicy(time_budget_s=0)
