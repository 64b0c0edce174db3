"""What NVML tells about one NVIDIA GPU during a cell: power, this process's memory, SM clock, temperature.

torch's allocator sees only memory allocated through torch; ONNX Runtime and
TensorRT allocate on their own, so NVML's per-process figure is the one that
covers every runtime. Clocks and temperature at the start and end of the timed
region show throttling. `nvidia-ml-py` (import `pynvml`) is optional: without it,
or without permission, every reading is absent and the columns stay empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuState:
    sm_clock_mhz: float
    temperature_c: float


class Nvml:
    """NVML readings for the GPU that torch calls ``cuda:<torch_index>``."""

    def __init__(self, pynvml: Any, handle: Any) -> None:
        self._nvml = pynvml
        self._handle = handle

    def power_w(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0  # NVML reports milliwatts

    def state(self) -> GpuState:
        nvml = self._nvml
        return GpuState(
            sm_clock_mhz=float(nvml.nvmlDeviceGetClockInfo(self._handle, nvml.NVML_CLOCK_SM)),
            temperature_c=float(nvml.nvmlDeviceGetTemperature(self._handle, nvml.NVML_TEMPERATURE_GPU)),
        )

    def process_memory_mb(self, pid: int | None = None) -> float:
        """Device memory NVML attributes to this process (every allocator), NaN where not reported."""
        pid = os.getpid() if pid is None else pid
        try:
            processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except Exception:  # not permitted in some containers
            return float("nan")
        for proc in processes:
            used = getattr(proc, "usedGpuMemory", None)
            if proc.pid == pid and used is not None:
                return used / 2**20
        return float("nan")


def gpu_handle(pynvml: Any, torch_index: int) -> Any:
    """NVML's handle for torch's GPU ``torch_index``.

    Matched by UUID: under CUDA_VISIBLE_DEVICES torch renumbers the GPUs it sees,
    while NVML numbers every GPU of the machine, so the indices can disagree.
    """
    import torch

    uuid = getattr(torch.cuda.get_device_properties(torch_index), "uuid", None)
    if uuid is not None:
        text = str(uuid)
        return pynvml.nvmlDeviceGetHandleByUUID(text if text.startswith("GPU-") else f"GPU-{text}")
    return pynvml.nvmlDeviceGetHandleByIndex(torch_index)


def open_gpu(torch_index: int) -> Nvml | None:
    """NVML for one GPU, or None where nvidia-ml-py is missing or NVML refuses (the columns then stay empty)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        nvml = Nvml(pynvml, gpu_handle(pynvml, torch_index))
        nvml.power_w()  # fails early where power readings are not permitted
    except Exception:
        return None
    return nvml
