"""The soak monitor: rows built tick by tick on a manual clock, the machine probe, and the live file."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.core.device import Device
from bench.measure.contention import HostCpu
from bench.measure.monitor import (
    PROBE_COLUMNS,
    ROW_COLUMNS,
    LiveFile,
    LiveTail,
    Monitor,
    SystemProbe,
    read_live,
    throttle_limits,
)
from bench.measure.nvml import Nvml
from bench.results.schema import TIMESERIES_COLUMNS
from bench.serving.live import Completion, LiveCounters
from tests.bench.measure.fakes import FakeClock

NAN = math.nan


class StillProbe:
    """A machine whose every reading is fixed (the GPU ones NaN, as on a CPU)."""

    def __init__(self, rss_mb: float = 512.0) -> None:
        self.rss_mb = rss_mb
        self.reads = 0

    def read(self) -> dict[str, float]:
        self.reads += 1
        return {c: NAN for c in PROBE_COLUMNS} | {"host_rss_mb": self.rss_mb, "cpu_util_pct": 25.0}


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], list[Completion]]] = []

    def __call__(self, row: dict[str, Any], new: list[Completion]) -> None:
        self.calls.append((row, new))


def test_row_columns_are_the_schema_less_cell_id() -> None:
    assert list(ROW_COLUMNS) == [c for c in TIMESERIES_COLUMNS if c != "cell_id"]
    assert set(PROBE_COLUMNS) < set(ROW_COLUMNS)


def test_each_tick_counts_the_interval_and_windows_the_latencies() -> None:
    counters, clock, sink = LiveCounters(), FakeClock(), RecordingSink()
    monitor = Monitor(
        counters, StillProbe(), interval_s=1.0, window_s=10.0, on_row=[sink], clock=clock, start_s=0.0
    )
    for i in range(4):  # 4 requests finish in the first second, latencies 10..40 ms
        counters.completed(0.2 + 0.2 * i, 0.010 * (i + 1), 0.001, 2)
    first = monitor.tick(1.0)
    counters.completed(1.5, 0.100, 0.050, 1)
    counters.dropped(3)
    clock.t = 2.0
    second = monitor.tick()  # the clock's own time
    assert list(first) == list(ROW_COLUMNS)
    assert first["t_s"] == 1.0 and second["t_s"] == 2.0
    assert first["achieved_qps"] == 4.0 and second["achieved_qps"] == 1.0
    assert first["latency_ms_p50"] == pytest.approx(25.0)
    assert second["latency_ms_p99"] == pytest.approx(100.0, rel=0.05)  # the 10 s window holds all five
    assert (second["completed_total"], second["dropped_total"]) == (5, 3)
    assert first["host_rss_mb"] == 512.0 and math.isnan(first["gpu_power_w"])
    assert [len(new) for _, new in sink.calls] == [4, 1]  # each completion handed on once
    assert sink.calls[1][1][0].latency_s == 0.100
    assert monitor.rows == [first, second]


def test_an_idle_second_has_zero_qps_and_no_latency() -> None:
    monitor = Monitor(LiveCounters(), StillProbe(), clock=FakeClock(), start_s=0.0)
    row = monitor.tick(1.0)
    assert row["achieved_qps"] == 0.0
    assert math.isnan(row["latency_ms_p50"]) and math.isnan(row["latency_ms_p99"])


def test_a_failing_sink_is_dropped_and_the_others_keep_going() -> None:
    sink = RecordingSink()

    def broken(row: dict[str, Any], new: list[Completion]) -> None:
        raise OSError("connection reset")

    monitor = Monitor(LiveCounters(), StillProbe(), on_row=[broken, sink], clock=FakeClock(), start_s=0.0)
    monitor.tick(1.0)
    monitor.tick(2.0)
    assert len(sink.calls) == 2
    assert len(monitor.errors) == 1 and "connection reset" in monitor.errors[0]


def test_a_failing_probe_gives_nan_readings_and_the_row_still_comes() -> None:
    class BrokenProbe:
        def read(self) -> dict[str, float]:
            raise RuntimeError("CUDA error: device lost")

    monitor = Monitor(LiveCounters(), BrokenProbe(), clock=FakeClock(), start_s=0.0)
    rows = [monitor.tick(1.0), monitor.tick(2.0)]
    assert all(math.isnan(row["host_rss_mb"]) for row in rows)
    assert rows[1]["t_s"] == 2.0 and rows[1]["achieved_qps"] == 0.0
    assert monitor.errors == ["BrokenProbe: CUDA error: device lost"]  # once, not once a second


def test_the_thread_ticks_on_schedule_until_stopped() -> None:
    counters, sink = LiveCounters(), RecordingSink()
    monitor = Monitor(counters, StillProbe(), interval_s=0.05, window_s=1.0, on_row=[sink])
    monitor.start()
    deadline = time.perf_counter() + 5.0
    while len(monitor.rows) < 4 and time.perf_counter() < deadline:
        counters.completed(time.perf_counter(), 0.01, 0.0, 1)
        time.sleep(0.01)
    rows = monitor.stop()
    assert len(rows) >= 4
    times = [r["t_s"] for r in rows]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert times[0] >= 0.05 - 1e-6  # the first tick is one interval after the start, never before
    assert sum(len(new) for _, new in sink.calls) == rows[-1]["completed_total"] > 0
    count = len(monitor.rows)
    time.sleep(0.12)
    assert len(monitor.rows) == count  # stopped means stopped
    with pytest.raises(RuntimeError):
        monitor.start()


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError):
        Monitor(LiveCounters(), StillProbe(), interval_s=0.0)


# ------------------------------------------------------------------ the probe
def test_cpu_shares_are_of_all_cores_over_the_interval() -> None:
    readings = iter([HostCpu(busy_s=100.0, steal_s=5.0), HostCpu(busy_s=101.0, steal_s=5.2)])
    clock = FakeClock()
    probe = SystemProbe(
        Device("cpu"),
        None,
        read_host=lambda: next(readings),
        read_rss_mb=lambda: 300.0,
        logical_cores=2,
        clock=clock,
    )
    clock.advance(1.0)
    reading = probe.read()
    assert set(reading) == set(PROBE_COLUMNS)
    assert reading["cpu_util_pct"] == pytest.approx(50.0)  # 1 busy second of 2 core-seconds
    assert reading["steal_pct"] == pytest.approx(10.0)
    assert reading["host_rss_mb"] == 300.0
    for column in (
        "torch_device_mem_mb",
        "nvml_device_mem_mb",
        "gpu_util_pct",
        "gpu_power_w",
        "sm_clock_mhz",
    ):
        assert math.isnan(reading[column])  # a CPU has none: NaN, never 0


def test_the_real_probe_on_this_cpu() -> None:
    probe = SystemProbe(Device("cpu"), None)
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:  # keep a core busy so the interval has CPU time in it
        pass
    reading = probe.read()
    assert 50 < reading["host_rss_mb"] < 100_000
    if not math.isnan(reading["cpu_util_pct"]):  # Linux
        assert 0.0 <= reading["cpu_util_pct"] <= 100.0
    assert math.isnan(reading["gpu_temp_c"])


class FakePynvml:
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:  # noqa: N802 - NVML's names
        return 350_000  # mW

    def nvmlDeviceGetClockInfo(self, handle: Any, kind: int) -> int:  # noqa: N802
        return 1755

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:  # noqa: N802
        return 64

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:  # noqa: N802
        return SimpleNamespace(gpu=93, memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:  # noqa: N802
        return SimpleNamespace(used=6 * 2**30, total=80 * 2**30, free=74 * 2**30)

    def nvmlDeviceGetTemperatureThreshold(self, handle: Any, kind: int) -> int:  # noqa: N802
        assert kind == self.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
        return 87

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:  # noqa: N802
        return 700_000  # mW


class RefusingPynvml(FakePynvml):
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:  # noqa: N802
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    def nvmlDeviceGetTemperatureThreshold(self, handle: Any, kind: int) -> int:  # noqa: N802
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")


def test_gpu_readings_come_through_the_nvml_wrapper() -> None:
    nvml = Nvml(FakePynvml(), handle="gpu0")
    reading = SystemProbe(Device("cpu"), nvml, read_host=lambda: None, read_rss_mb=lambda: 1.0).read()
    assert reading["gpu_util_pct"] == 93.0
    assert reading["nvml_device_mem_mb"] == 6 * 1024
    assert reading["gpu_power_w"] == 350.0
    assert (reading["sm_clock_mhz"], reading["gpu_temp_c"]) == (1755.0, 64.0)
    assert math.isnan(reading["cpu_util_pct"])  # no /proc/stat reading: NaN
    assert throttle_limits(nvml) == (87.0, 700.0)


def test_a_reading_nvml_refuses_is_nan() -> None:
    nvml = Nvml(RefusingPynvml(), handle="gpu0")
    reading = SystemProbe(Device("cpu"), nvml, read_rss_mb=lambda: 1.0).read()
    assert math.isnan(reading["gpu_util_pct"])
    assert reading["sm_clock_mhz"] == 1755.0
    temp, power = throttle_limits(nvml)
    assert math.isnan(temp) and power == 700.0
    assert all(math.isnan(v) for v in throttle_limits(None))


# ------------------------------------------------------------------ the live file
def test_the_live_file_round_trips_rows_with_nan(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "live.jsonl"
    live = LiveFile(path)
    monitor = Monitor(LiveCounters(), StillProbe(), on_row=[live], clock=FakeClock(), start_s=0.0)
    written = [monitor.tick(1.0), monitor.tick(2.0)]
    live.close()
    rows = read_live(path)
    assert [list(r) for r in rows] == [list(ROW_COLUMNS)] * 2
    assert rows[1]["t_s"] == 2.0 and rows[1]["completed_total"] == 0
    assert math.isnan(rows[0]["gpu_power_w"]) and math.isnan(rows[0]["latency_ms_p50"])
    assert rows[0]["host_rss_mb"] == written[0]["host_rss_mb"]
    assert "NaN" not in path.read_text()  # standard JSON: NaN is written as null


def test_a_half_written_last_line_is_left_for_later(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    assert read_live(path) == []  # not written yet
    path.write_text('{"t_s": 1.0, "achieved_qps": 3.0}\n{"t_s": 2.0, "achi')
    tail = LiveTail(path)
    assert [r["t_s"] for r in tail.read_new()] == [1.0]
    assert tail.read_new() == []
    with path.open("a") as f:
        f.write('eved_qps": 4.0}\nnot json\n{"t_s": 3.0}\n')
    assert [r["t_s"] for r in tail.read_new()] == [2.0, 3.0]  # the bad line is skipped
    assert [r["t_s"] for r in read_live(path)] == [1.0, 2.0, 3.0]


def test_a_reader_in_another_thread_sees_rows_as_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    live = LiveFile(path)
    seen: list[float] = []

    def follow() -> None:
        tail, deadline = LiveTail(path), time.perf_counter() + 5.0
        while len(seen) < 20 and time.perf_counter() < deadline:
            seen.extend(r["t_s"] for r in tail.read_new())
            time.sleep(0.001)

    reader = threading.Thread(target=follow)
    reader.start()
    for i in range(20):
        live.on_row({"t_s": float(i), "host_rss_mb": 1.0})
    reader.join(timeout=10)
    live.close()
    assert seen == [float(i) for i in range(20)]
