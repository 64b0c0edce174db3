"""Timing logic against fake clocks: stopping rules, statistics, and what each timer counts."""

import math
import time

import numpy as np
import pytest

from bench.measure.timing import (
    EventTimer,
    HostTimer,
    SamplingPolicy,
    median_ci,
    relative_ci_halfwidth,
    sample_adaptively,
    summarize,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeGpu:
    """An asynchronous device: kernels queue on the device timeline; the host returns at once.

    ``synchronize`` blocks the host until the queue drains and costs ``sync_cost_s`` of host time
    on top, like cudaDeviceSynchronize's own overhead.
    """

    def __init__(self, clock: FakeClock, sync_cost_s: float) -> None:
        self.clock = clock
        self.sync_cost_s = sync_cost_s
        self.busy_until = 0.0

    def launch(self, kernel_s: float) -> None:
        self.busy_until = max(self.busy_until, self.clock.t) + kernel_s
        self.clock.advance(5e-6)  # launch overhead on the host

    def synchronize(self) -> None:
        self.clock.t = max(self.clock.t, self.busy_until) + self.sync_cost_s

    def make_event(self) -> "FakeEvent":
        return FakeEvent(self)


class FakeEvent:
    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.when: float | None = None

    def record(self) -> None:  # an event completes when the queue reaches it
        self.when = max(self.gpu.busy_until, self.gpu.clock.t)

    def synchronize(self) -> None:
        assert self.when is not None
        self.gpu.clock.t = max(self.gpu.clock.t, self.when) + self.gpu.sync_cost_s

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert self.when is not None and end.when is not None
        return (end.when - self.when) * 1e3


def test_host_timer_without_synchronize_measures_only_the_launch() -> None:
    clock = FakeClock()
    gpu = FakeGpu(clock, sync_cost_s=0.0003)
    naive = HostTimer(clock=clock)  # the classic bug: no synchronize
    assert naive.measure(lambda: gpu.launch(0.005)) < 0.1


def test_host_timer_with_synchronize_includes_the_sync_cost() -> None:
    clock = FakeClock()
    gpu = FakeGpu(clock, sync_cost_s=0.0003)
    timer = HostTimer(clock=clock, synchronize=gpu.synchronize)
    ms = timer.measure(lambda: gpu.launch(0.005))
    assert ms == pytest.approx(5.0 + 0.3, abs=0.01)


def test_host_timer_does_not_count_work_queued_before_it() -> None:
    clock = FakeClock()
    gpu = FakeGpu(clock, sync_cost_s=0.0)
    gpu.launch(0.050)  # earlier, unrelated work still running
    timer = HostTimer(clock=clock, synchronize=gpu.synchronize)
    assert timer.measure(lambda: gpu.launch(0.005)) == pytest.approx(5.0, abs=0.01)


def test_event_timer_counts_device_time_and_not_the_sync_cost() -> None:
    clock = FakeClock()
    gpu = FakeGpu(clock, sync_cost_s=0.0003)
    timer = EventTimer(gpu.make_event)
    assert timer.measure(lambda: gpu.launch(0.005)) == pytest.approx(5.0, abs=1e-6)
    assert timer.measure(lambda: (gpu.launch(0.002), gpu.launch(0.003))) == pytest.approx(5.0, abs=1e-6)


def test_real_host_timer_measures_real_sleep() -> None:
    ms = HostTimer().measure(lambda: time.sleep(0.02))
    assert 19.0 <= ms < 500.0


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
