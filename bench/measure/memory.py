"""Peak memory of a cell: host RSS sampled by a thread, device peak from torch's allocator."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import psutil
import torch

from bench.core.columns import RowPart
from bench.core.device import Device
from bench.measure.sampler import PeriodicSampler


class PeakRSS(PeriodicSampler):
    """Peak resident set size of this process, sampled every ``interval_s``.

    A sampler, not ru_maxrss: ru_maxrss is the peak over the whole process life,
    so every cell after the biggest one would report the same number.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        super().__init__(interval_s, name="genbench-rss")
        self._process = psutil.Process()
        self.peak_bytes = 0
        self.baseline_bytes = (
            self._process.memory_info().rss
        )  # before the region: what the process already held

    def sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def baseline_mb(self) -> float:
        return self.baseline_bytes / 2**20


def release_device_cache(device: Device) -> None:
    """Free what nothing references any more and hand torch's cached device blocks back (a no-op on CPU)."""
    if device.is_cuda:
        gc.collect()
        torch.cuda.empty_cache()


def reset_device_peak(device: Device) -> None:
    if device.is_cuda:
        torch.cuda.reset_peak_memory_stats(device.torch_name)


def device_peak_mb(device: Device) -> float:
    """Peak bytes allocated through torch on the device since the last reset (NaN on CPU)."""
    if not device.is_cuda:
        return float("nan")
    return torch.cuda.max_memory_allocated(device.torch_name) / 2**20


def device_peak_reserved_mb(device: Device) -> float:
    """Peak bytes torch's caching allocator held on the device since the last reset (NaN on CPU).

    Above the allocated peak by the allocator's cache and fragmentation: what the
    device must really have free for this cell.
    """
    if not device.is_cuda:
        return float("nan")
    return torch.cuda.max_memory_reserved(device.torch_name) / 2**20


@dataclass(frozen=True)
class Footprint(RowPart):
    """A cell's peak memory: host RSS over the cell, and torch's device peaks while the optimized model ran.

    The device peaks are NaN on CPU and for runtimes that allocate outside torch (ONNX Runtime,
    TensorRT), whose memory NVML's per-process figure covers instead.
    """

    peak_host_rss_mb: float
    peak_device_mem_mb: float = math.nan
    peak_device_reserved_mb: float = math.nan
    rss_baseline_mb: float = (
        math.nan
    )  # the process's RSS before the cell: the runtime's share (torch, libraries)

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "peak_host_rss_mb", "peak_device_mem_mb", "peak_device_reserved_mb", "rss_baseline_mb",
    )  # fmt: skip

    @classmethod
    def of(cls, rss: PeakRSS, device: Any, through_torch: bool = True) -> Footprint:
        """The cell's footprint: the host peak ``rss`` sampled, and torch's device peaks since the last
        reset where the runtime allocates through torch (``through_torch``), else NaN."""
        return cls(
            peak_host_rss_mb=rss.peak_mb,
            peak_device_mem_mb=device_peak_mb(device) if through_torch else math.nan,
            peak_device_reserved_mb=device_peak_reserved_mb(device) if through_torch else math.nan,
            rss_baseline_mb=rss.baseline_mb,
        )
