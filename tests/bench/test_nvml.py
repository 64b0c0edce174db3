"""The NVML wrapper against a stand-in pynvml (the real one needs an NVIDIA GPU)."""

import math
from types import SimpleNamespace

from bench.nvml import Nvml


class FakePynvml:
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, processes=None, refuse_processes=False) -> None:
        self.processes = processes or []
        self.refuse_processes = refuse_processes

    def nvmlDeviceGetPowerUsage(self, handle):  # noqa: N802 - NVML's own names
        return 312_500  # milliwatts

    def nvmlDeviceGetClockInfo(self, handle, kind):  # noqa: N802
        assert kind == self.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetTemperature(self, handle, sensor):  # noqa: N802
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 61

    def nvmlDeviceGetComputeRunningProcesses(self, handle):  # noqa: N802
        if self.refuse_processes:
            raise RuntimeError("NVML_ERROR_NO_PERMISSION")
        return self.processes


def test_power_is_converted_from_milliwatts() -> None:
    assert Nvml(FakePynvml(), handle=None).power_w() == 312.5


def test_state_reads_sm_clock_and_temperature() -> None:
    state = Nvml(FakePynvml(), handle=None).state()
    assert state.sm_clock_mhz == 1980 and state.temperature_c == 61


def test_process_memory_is_this_process_only() -> None:
    procs = [
        SimpleNamespace(pid=1, usedGpuMemory=5 * 2**30),
        SimpleNamespace(pid=42, usedGpuMemory=3 * 2**20),
    ]
    nvml = Nvml(FakePynvml(processes=procs), handle=None)
    assert nvml.process_memory_mb(pid=42) == 3.0
    assert math.isnan(nvml.process_memory_mb(pid=7))  # not listed: unknown, not zero


def test_process_memory_is_nan_where_nvml_refuses() -> None:
    assert math.isnan(Nvml(FakePynvml(refuse_processes=True), handle=None).process_memory_mb(pid=1))
