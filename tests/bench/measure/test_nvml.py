"""The NVML wrapper against a stand-in pynvml (the real one needs an NVIDIA GPU)."""

import math
from types import SimpleNamespace

import pytest

from bench.measure.nvml import Nvml, gpu_handle


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

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):  # noqa: N802
        return 123_456_789  # millijoules since the driver loaded


class NewerPynvml(FakePynvml):
    """A driver with the instantaneous power field (GetPowerUsage is then a 1 s average)."""

    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_SUCCESS = 0

    def __init__(self, field_status: int = 0) -> None:
        super().__init__()
        self.field_status = field_status

    def nvmlDeviceGetFieldValues(self, handle, fields):  # noqa: N802
        assert fields == [186]
        return [SimpleNamespace(nvmlReturn=self.field_status, value=SimpleNamespace(uiVal=401_000))]


class UnsupportedPynvml(FakePynvml):
    """A GPU (vGPU, MIG slice) that refuses clocks, temperature and energy."""

    def nvmlDeviceGetClockInfo(self, handle, kind):  # noqa: N802
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    def nvmlDeviceGetTemperature(self, handle, sensor):  # noqa: N802
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):  # noqa: N802
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")


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


def test_instantaneous_power_is_preferred_where_the_driver_has_it() -> None:
    assert Nvml(NewerPynvml(), handle=None).power_w() == 401.0
    assert (
        Nvml(NewerPynvml(field_status=3), handle=None).power_w() == 312.5
    )  # field refused: averaged reading


def test_energy_counter_is_read_in_joules() -> None:
    assert Nvml(FakePynvml(), handle=None).energy_j() == pytest.approx(123_456.789)


def test_unsupported_readings_are_nan_not_a_failed_cell() -> None:
    nvml = Nvml(UnsupportedPynvml(), handle=None)
    state = nvml.state()
    assert math.isnan(state.sm_clock_mhz) and math.isnan(state.temperature_c)
    assert math.isnan(nvml.energy_j())
    assert nvml.power_w() == 312.5


def test_gpu_is_found_by_uuid_and_a_mig_slice_by_its_prefix(monkeypatch) -> None:
    import torch

    seen: list[str] = []

    class ByUuid:
        def nvmlDeviceGetHandleByUUID(self, uuid):  # noqa: N802
            seen.append(uuid)
            if not uuid.startswith("MIG-"):
                raise RuntimeError("NVML_ERROR_NOT_FOUND")
            return "handle"

    props = SimpleNamespace(uuid="1b2c3d4e-0000-1111-2222-333344445555")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    assert gpu_handle(ByUuid(), 0) == "handle"
    assert seen == ["GPU-1b2c3d4e-0000-1111-2222-333344445555", "MIG-1b2c3d4e-0000-1111-2222-333344445555"]
