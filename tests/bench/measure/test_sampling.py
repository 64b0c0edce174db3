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


def test_a_5_s_model_with_a_1_s_budget_takes_one_warm_up_and_one_timed_call() -> None:
    """Was 76 s for one cell: warm-up and min_samples both ran past the budget."""
    clock = FakeClock()
    policy = SamplingPolicy(min_samples=10, time_budget_s=1.0, warmup_s=0.3, warmup_min_iters=2)
    result = sample_adaptively(_fake_workload(clock, [5000.0] * 100), policy, wall=clock)
    assert len(result.warmup_ms) == 1  # its 0.3 s were spent by the first call
    assert len(result.latencies_ms) == 1  # one call took the whole budget
    assert result.stop_reason == "budget (1 < min-samples 10)"
    assert clock.t == 10.0


@pytest.mark.parametrize(
    ("call_ms", "taken"),
    [
        (300.0, 4),  # 0.9 s after 3 calls, 1.2 s after 4: the budget is spent with 4 samples
        (400.0, 3),  # spent at 3 calls (1.2 s)
        (600.0, 3),  # spent at 2 calls (1.2 s) but below the floor of 3: one more
    ],
)
def test_the_budget_stops_sampling_below_min_samples_once_the_floor_is_reached(
    call_ms: float, taken: int
) -> None:
    clock = FakeClock()
    policy = SamplingPolicy(min_samples=10, time_budget_s=1.0, warmup_s=0.0, warmup_min_iters=1)
    result = sample_adaptively(_fake_workload(clock, [call_ms] * 100), policy, wall=clock)
    assert len(result.latencies_ms) == taken
    assert result.stop_reason == f"budget ({taken} < min-samples 10)"


def test_one_call_longer_than_the_whole_budget_ends_sampling_below_the_floor() -> None:
    clock = FakeClock()
    policy = SamplingPolicy(min_samples=10, time_budget_s=1.0, warmup_s=0.0, warmup_min_iters=1)
    result = sample_adaptively(_fake_workload(clock, [1.0, 100.0, 2500.0] + [1.0] * 100), policy, wall=clock)
    assert result.latencies_ms == [100.0, 2500.0]  # (the first call was the warm-up)
    assert result.stop_reason == "budget (2 < min-samples 10)"


def test_min_samples_are_taken_when_the_budget_allows() -> None:
    clock = FakeClock()
    rng = np.random.default_rng(2)
    policy = SamplingPolicy(min_samples=10, time_budget_s=1.0, warmup_s=0.0, warmup_min_iters=1)
    latencies = list(rng.uniform(20.0, 80.0, size=1000))  # ~20 per second, too noisy to converge
    result = sample_adaptively(_fake_workload(clock, latencies), policy, wall=clock)
    assert result.stop_reason == "time_budget"  # the existing name when min_samples were reached
    assert len(result.latencies_ms) > 10


def test_warm_up_without_a_time_makes_its_calls_but_never_more_than_the_budget() -> None:
    clock = FakeClock()
    policy = SamplingPolicy(min_samples=3, time_budget_s=1.0, warmup_s=0.0, warmup_min_iters=5)
    result = sample_adaptively(_fake_workload(clock, [400.0] * 100), policy, wall=clock)
    assert len(result.warmup_ms) == 3  # 1.2 s after 3 calls: past the whole budget


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
    with pytest.raises(ValueError):
        SamplingPolicy(budget_floor=0)
