"""Peak memory of a cell: host RSS sampled by a thread, device peak from torch's allocator."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil
import torch
from torch import nn

from bench.devices import Device


class PeakRSS:
    """Context manager sampling this process's resident set size every ``interval_s``.

    A sampler, not ru_maxrss: ru_maxrss is the peak over the whole process life,
    so every cell after the biggest one would report the same number.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="genbench-rss")
        self.peak_bytes = 0

    def _read(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read()

    def __enter__(self) -> PeakRSS:
        self._read()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


def reset_device_peak(device: Device) -> None:
    if device.is_cuda:
        torch.cuda.reset_peak_memory_stats(device.torch_name)


def device_peak_mb(device: Device) -> float:
    """Peak bytes allocated through torch on the device since the last reset (NaN on CPU)."""
    if not device.is_cuda:
        return float("nan")
    return torch.cuda.max_memory_allocated(device.torch_name) / 2**20


def module_size(module: nn.Module) -> tuple[int, int]:
    """(parameter count, bytes of parameters and buffers) of a module, as stored."""
    params = sum(p.numel() for p in module.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
    nbytes += sum(b.numel() * b.element_size() for b in module.buffers())
    return params, nbytes
