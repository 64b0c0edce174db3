"""The contention meter: other processes' CPU time over a region, from injected readings and once for real."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness.config import RunConfig
from bench.measure.contention import ContentionMeter, HostCpu, busy_before_run, is_contended, read_host_cpu


class FakeMachine:
    """A clock and CPU counters that a test advances: `others` cores busy besides our `own` use."""

    def __init__(self) -> None:
        self.now = 0.0
        self.busy = 0.0
        self.own = 0.0
        self.steal = 0.0

    def advance(
        self, seconds: float, *, own_cores: float, other_cores: float, steal_cores: float = 0.0
    ) -> None:
        self.now += seconds
        self.own += own_cores * seconds
        self.busy += (own_cores + other_cores) * seconds
        self.steal += steal_cores * seconds

    def meter(
        self, cell_cores: int, logical_cores: int, gpu: list[int] | None = None, tick_s: float = 0.0
    ) -> ContentionMeter:
        return ContentionMeter(
            cell_cores,
            logical_cores=logical_cores,
            read_host=lambda: HostCpu(self.busy, self.steal),
            read_own=lambda: self.own,
            read_load=lambda: 1.5,
            clock=lambda: self.now,
            gpu_processes=(lambda: gpu) if gpu is not None else None,
            own_pids=(1234,),
            tick_s=tick_s,
        )


def test_a_quiet_machine_is_not_contended() -> None:
    machine = FakeMachine()
    meter = machine.meter(cell_cores=2, logical_cores=2)
    meter.start()
    machine.advance(2.0, own_cores=2.0, other_cores=0.02)  # a shell prompt, a timer interrupt
    reading = meter.stop()
    assert reading.contended is False
    assert reading.host_busy_pct == pytest.approx(1.0)
    assert reading.load_avg_1m == 1.5


def test_a_neighbour_on_the_cells_cores_is_contended() -> None:
    machine = FakeMachine()
    meter = machine.meter(cell_cores=2, logical_cores=2)
    meter.start()
    machine.advance(2.0, own_cores=1.0, other_cores=1.0)
    reading = meter.stop()
    assert reading.contended is True
    assert reading.host_busy_pct == pytest.approx(50.0)
    assert "1.00 cores" in reading.describe()


def test_a_neighbour_on_spare_cores_is_not_contended_but_more_than_them_is() -> None:
    machine = FakeMachine()
    meter = machine.meter(cell_cores=1, logical_cores=2)  # --threads 1 on two cores: one core spare
    meter.start()
    machine.advance(1.0, own_cores=1.0, other_cores=1.0)
    assert meter.stop().contended is False
    meter.start()
    machine.advance(1.0, own_cores=1.0, other_cores=1.2)
    assert meter.stop().contended is True


def test_steal_time_counts_against_the_cell() -> None:
    machine = FakeMachine()
    meter = machine.meter(cell_cores=2, logical_cores=2)
    meter.start()
    machine.advance(1.0, own_cores=1.8, other_cores=0.0, steal_cores=0.3)
    reading = meter.stop()
    assert reading.contended is True and reading.steal_pct == pytest.approx(15.0)


def test_another_process_on_the_gpu_is_contended() -> None:
    machine = FakeMachine()
    meter = machine.meter(cell_cores=2, logical_cores=2, gpu=[1234, 999])  # 1234 is ours
    meter.start()
    machine.advance(1.0, own_cores=1.0, other_cores=0.0)
    reading = meter.stop()
    assert reading.gpu_other_procs == 1 and reading.contended is True
    alone = machine.meter(cell_cores=2, logical_cores=2, gpu=[1234])
    alone.start()
    machine.advance(1.0, own_cores=1.0, other_cores=0.0)
    assert alone.stop().contended is False


def test_the_threshold_is_a_tenth_of_a_core_beyond_the_spare_ones() -> None:
    assert not is_contended(0.09, 0.0, cell_cores=2, logical_cores=2)
    assert is_contended(0.11, 0.0, cell_cores=2, logical_cores=2)
    assert not is_contended(2.05, 0.0, cell_cores=2, logical_cores=4)


def test_proc_stat_is_read_where_there_is_one() -> None:
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat on this system")
    first = read_host_cpu()
    assert first is not None and first.busy_s > 0 and first.steal_s >= 0


def _burner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def test_a_cpu_burning_neighbour_is_seen_for_real() -> None:
    if read_host_cpu() is None:
        pytest.skip("no /proc/stat on this system")
    burner = _burner()
    try:
        time.sleep(0.3)  # let it start spinning
        reading = busy_before_run(threads=1, seconds=1.0, meter=ContentionMeter(1, logical_cores=1))
    finally:
        burner.kill()
        burner.wait()
    assert reading is not None and "--threads 1" in reading  # one core, and someone else spins on it


def test_a_run_beside_a_burner_marks_its_cells_contended(run_matrix) -> None:
    if read_host_cpu() is None:
        pytest.skip("no /proc/stat on this system")
    import os

    import torch

    threads = torch.get_num_threads()
    burners = [
        _burner() for _ in range(os.cpu_count() or 1)
    ]  # more than the spare cores, whatever the machine
    try:
        time.sleep(0.3)
        # a timed region of seconds, not milliseconds: far above the counters' 10 ms rounding
        frame = run_matrix(
            models=("dcgan",),
            pipelines=("fp32",),
            batch_sizes=(1,),
            threads=1,
            min_samples=2000,
            time_budget_s=3.0,
        )
    finally:
        torch.set_num_threads(threads)
        for burner in burners:
            burner.kill()
            burner.wait()
    assert frame["status"].tolist() == ["ok"]
    assert frame["contended"].tolist() == [True]
    assert frame["host_busy_pct"].iloc[0] > 10
    assert "contended: others used" in frame["notes"].iloc[0]
    assert frame["threads"].tolist() == [1]


def test_threads_is_a_run_setting() -> None:
    assert RunConfig(threads=1).threads == 1


def test_a_stray_tick_over_a_short_region_is_rounding_not_a_neighbour() -> None:
    machine = FakeMachine()
    meter = machine.meter(cell_cores=2, logical_cores=2, tick_s=0.01)
    meter.start()
    machine.advance(0.015, own_cores=2.0, other_cores=0.0)
    machine.busy += 0.01  # one 10 ms tick more on the machine's counter than on ours
    assert meter.stop().contended is False
    meter.start()
    machine.advance(1.0, own_cores=1.0, other_cores=1.0)  # a real neighbour is still seen
    assert meter.stop().contended is True
