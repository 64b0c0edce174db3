"""What NVML tells about one NVIDIA GPU during a cell: energy, power, this process's memory, SM clock, temperature.

torch's allocator sees only memory allocated through torch; ONNX Runtime and
TensorRT allocate on their own, so NVML's per-process figure is the one that
covers every runtime. Clocks and temperature at the start and end of the timed
region show throttling. `nvidia-ml-py` (import `pynvml`) is optional: without it,
or without permission, every reading is absent and the columns stay empty; a
reading one GPU does not support (clocks on some vGPUs, say) is NaN, never a
failed cell.

Power: `nvmlDeviceGetPowerUsage` is, on Ampere (except GA100) and newer, a
trailing one-second average, too slow for a timed region of a few seconds, so
the instantaneous field (`NVML_FI_DEV_POWER_INSTANT`) is read where the driver
has it. Energy: the total-energy counter (millijoules since the driver loaded,
Volta and newer) is exact over any interval; it is preferred to integrating power.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAN = float("nan")


@dataclass(frozen=True)
class GpuState:
    sm_clock_mhz: float
    temperature_c: float


def _or_nan(read: Callable[[], float]) -> float:
    try:
        return float(read())
    except Exception:  # NVMLError_NotSupported / NoPermission on some GPUs, vGPUs and MIG slices
        return NAN


class Nvml:
    """NVML readings for the GPU that torch calls ``cuda:<torch_index>``."""

    def __init__(self, pynvml: Any, handle: Any) -> None:
        self._nvml = pynvml
        self._handle = handle
        self._instant_field = getattr(pynvml, "NVML_FI_DEV_POWER_INSTANT", None)

    def _instant_power_w(self) -> float:
        if self._instant_field is None:
            return NAN
        try:
            (value,) = self._nvml.nvmlDeviceGetFieldValues(self._handle, [self._instant_field])
        except Exception:
            return NAN
        if value.nvmlReturn != getattr(self._nvml, "NVML_SUCCESS", 0):
            return NAN
        return value.value.uiVal / 1000.0  # milliwatts

    @property
    def has_instant_power(self) -> bool:
        """Whether power readings are instantaneous (else a trailing one-second average)."""
        return not math.isnan(self._instant_power_w())

    def power_w(self) -> float:
        """Board power now: the instantaneous field where the driver has it, else NVML's power usage."""
        instant = self._instant_power_w()
        if not math.isnan(instant):
            return instant
        return _or_nan(lambda: self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0)  # milliwatts

    def energy_j(self) -> float:
        """The GPU's energy counter in joules (since the driver loaded); NaN where the GPU has none."""
        return _or_nan(lambda: self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0)

    def state(self) -> GpuState:
        nvml = self._nvml
        return GpuState(
            sm_clock_mhz=_or_nan(lambda: nvml.nvmlDeviceGetClockInfo(self._handle, nvml.NVML_CLOCK_SM)),
            temperature_c=_or_nan(
                lambda: nvml.nvmlDeviceGetTemperature(self._handle, nvml.NVML_TEMPERATURE_GPU)
            ),
        )

    def utilization_pct(self) -> float:
        """The share of the last sample period in which a kernel ran (NVML's GPU utilization), in %."""
        return _or_nan(lambda: self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def memory_used_mb(self) -> float:
        """Device memory in use by every process (NVML's view, not only torch's allocator)."""
        return _or_nan(lambda: self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20)

    def slowdown_temp_c(self) -> float:
        """The temperature at which the GPU starts slowing its clocks (a soak's throttling check)."""
        nvml = self._nvml
        return _or_nan(
            lambda: nvml.nvmlDeviceGetTemperatureThreshold(
                self._handle, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
            )
        )

    def power_limit_w(self) -> float:
        """The power limit the driver enforces now, in W."""
        return _or_nan(lambda: self._nvml.nvmlDeviceGetEnforcedPowerLimit(self._handle) / 1000.0)

    def compute_processes(self) -> list[Any]:
        """NVML's compute processes on this GPU (each with ``pid`` and ``usedGpuMemory``); raises where refused."""
        return list(self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle))

    def process_memory_mb(self, pid: int | None = None) -> float:
        """Device memory NVML attributes to this process (every allocator), NaN where not reported.

        In a container without the host's PID namespace NVML lists host PIDs, so this
        process is not found and the figure is NaN (unknown), not zero.
        """
        pid = os.getpid() if pid is None else pid
        try:
            processes = self.compute_processes()
        except Exception:  # not permitted in some containers
            return NAN
        for proc in processes:
            used = getattr(proc, "usedGpuMemory", None)
            if proc.pid == pid and used is not None:
                return used / 2**20
        return NAN


def gpu_handle(pynvml: Any, torch_index: int) -> Any:
    """NVML's handle for torch's GPU ``torch_index``.

    Matched by UUID: under CUDA_VISIBLE_DEVICES torch renumbers the GPUs it sees,
    while NVML numbers every GPU of the machine, so the indices can disagree.
    torch prints the UUID without its prefix; a MIG slice's is ``MIG-...``.
    """
    import torch

    uuid = getattr(torch.cuda.get_device_properties(torch_index), "uuid", None)
    if uuid is None:
        return pynvml.nvmlDeviceGetHandleByIndex(torch_index)
    text = str(uuid)
    if text.startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByUUID(text)
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{text}")
    except Exception:
        return pynvml.nvmlDeviceGetHandleByUUID(f"MIG-{text}")


def open_gpu(torch_index: int) -> Nvml | None:
    """NVML for one GPU, or None where nvidia-ml-py is missing or NVML refuses (the columns then stay empty)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return Nvml(pynvml, gpu_handle(pynvml, torch_index))
    except Exception:
        return None
