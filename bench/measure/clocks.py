"""Clocks: how long one call's work took, on the host or on the device.

Timing code takes its clocks as arguments (as torch.utils.benchmark does), so
the stopping rule and the synchronization logic are tested on CPU with fake
clocks, and the real clocks are tested on real work.

- ``HostTimer`` reads a host clock around the call and synchronizes the device
  before reading it again (on CPU the synchronize is a no-op).
- ``EventTimer`` records device events around the call on the current stream and
  reads the device-side elapsed time after the end event completes, so the
  host-side synchronize cost is not counted (CUDA events).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class Timer(Protocol):
    def measure(self, fn: Callable[[], Any]) -> float:
        """Run ``fn`` once and return how long its work took, in milliseconds."""
        ...


class HostTimer:
    """Host clock around the call, with a device synchronize before the stop reading."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        synchronize: Callable[[], None] = lambda: None,
    ) -> None:
        self.clock = clock
        self.synchronize = synchronize

    def measure(self, fn: Callable[[], Any]) -> float:
        self.synchronize()  # nothing queued from before may leak into this interval
        start = self.clock()
        fn()
        self.synchronize()
        return (self.clock() - start) * 1e3


class Event(Protocol):
    def record(self) -> None: ...

    def synchronize(self) -> None: ...

    def elapsed_time(self, end: Any) -> float: ...


class EventTimer:
    """Device events around the call; ``make_event`` is ``torch.cuda.Event(enable_timing=True)`` on CUDA."""

    def __init__(self, make_event: Callable[[], Event]) -> None:
        self.make_event = make_event

    def measure(self, fn: Callable[[], Any]) -> float:
        start, end = self.make_event(), self.make_event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))


def cuda_events(device: Any) -> Callable[[], Event]:
    """Makes timing events on ``device`` (a CUDA genbench Device), recorded on its current stream."""
    import torch

    torch_device = torch.device(device.torch_name)

    def make_event() -> Event:
        with torch.cuda.device(torch_device):
            return torch.cuda.Event(enable_timing=True)

    return make_event


def timer_for(device: Any) -> Timer:
    """The right timer for a device: CUDA events on the current stream on CUDA, perf_counter on CPU."""
    if getattr(device, "is_cuda", False):
        return EventTimer(cuda_events(device))
    return HostTimer()
