from __future__ import annotations

import time

import pytest

from bench.measure.clocks import EventTimer, HostTimer
from tests.bench.measure.fakes import FakeClock, FakeGpu


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
