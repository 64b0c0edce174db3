"""Clocks for a loop of steps: one reading per step, and on a GPU one synchronize per loop.

A generation (prefill, then a decode step per token) or a sampling run (a UNet call
per step, then the VAE) is timed step by step without changing how it runs: on CUDA
each ``mark()`` records an event on the current stream, nothing waits, and
``times_ms()`` synchronizes once, on the last event, before reading them all (a
synchronize per token would drain the launch queue between steps and time a loop
nobody runs). On CPU each mark is a ``perf_counter`` reading. The events and the
host clock are injectable, so the arithmetic and the one-sync rule are tested on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from bench.measure.clocks import Event, cuda_events


class StepClock(Protocol):
    def start(self) -> None:
        """Begin a loop: the reading every later mark is measured from."""
        ...

    def mark(self) -> None:
        """The end of one step (no synchronize)."""
        ...

    def times_ms(self) -> list[float]:
        """Milliseconds from ``start`` to each mark, in order (waits for the device once)."""
        ...


class HostStepClock:
    """``perf_counter`` at the start and at every mark, with a device synchronize before each reading.

    On CPU ``synchronize`` is a no-op, so a mark is one clock reading.
    """

    def __init__(
        self, clock: Callable[[], float] = time.perf_counter, synchronize: Callable[[], None] = lambda: None
    ) -> None:
        self.clock = clock
        self.synchronize = synchronize
        self._start = 0.0
        self._marks: list[float] = []

    def start(self) -> None:
        self.synchronize()
        self._marks = []
        self._start = self.clock()

    def mark(self) -> None:
        self.synchronize()
        self._marks.append(self.clock())

    def times_ms(self) -> list[float]:
        return [(t - self._start) * 1e3 for t in self._marks]


class EventStepClock:
    """A device event at the start and at every mark; one synchronize, on the last event, in ``times_ms``.

    Events are made once and reused from loop to loop (``make_event`` is
    ``torch.cuda.Event(enable_timing=True)`` on CUDA), so a long generation does not
    allocate one per token inside the timed region.
    """

    def __init__(self, make_event: Callable[[], Event]) -> None:
        self.make_event = make_event
        self._events: list[Event] = []
        self._used = 0

    def _next(self) -> Event:
        if self._used == len(self._events):
            self._events.append(self.make_event())
        event = self._events[self._used]
        self._used += 1
        return event

    def start(self) -> None:
        self._used = 0
        self._next().record()

    def mark(self) -> None:
        self._next().record()

    def times_ms(self) -> list[float]:
        if self._used < 2:
            return []
        first, last = self._events[0], self._events[self._used - 1]
        last.synchronize()  # the only wait of the loop: every earlier event has completed too
        return [float(first.elapsed_time(e)) for e in self._events[1 : self._used]]


def step_clock_for(device: Any) -> StepClock:
    """CUDA events on the current stream on a GPU, ``perf_counter`` on CPU."""
    if getattr(device, "is_cuda", False):
        return EventStepClock(cuda_events(device))
    return HostStepClock()
