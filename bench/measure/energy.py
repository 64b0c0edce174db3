"""Energy over a window of a cell's calls (NVML on NVIDIA GPUs, through bench.measure.nvml).

A background thread reads power at >= 10 Hz (PowerSampler) and the trapezoid
integral of those readings is the energy; the GPU's energy counter, read at the
window's edges, is the other source (EnergyMeter says when each is preferred).
The readers are injectable, so the arithmetic and threading are tested on CPU;
the NVML readers need a GPU and `nvidia-ml-py`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.core.columns import RowPart
from bench.measure.sampler import PeriodicSampler


@dataclass(frozen=True)
class EnergyReading:
    joules: float
    seconds: float
    n_samples: int
    source: str = "power-integral"

    @property
    def avg_power_w(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else float("nan")


def integrate(times_s: list[float], watts: list[float]) -> EnergyReading:
    """Trapezoid rule over (time, power) samples; fewer than two samples give NaN energy."""
    if len(times_s) < 2:
        return EnergyReading(float("nan"), 0.0, len(times_s))
    if len(times_s) != len(watts):
        raise ValueError("need one power reading per time stamp")
    joules = 0.0
    for i in range(1, len(times_s)):
        joules += (times_s[i] - times_s[i - 1]) * (watts[i] + watts[i - 1]) / 2
    return EnergyReading(joules, times_s[-1] - times_s[0], len(times_s))


class PowerSampler(PeriodicSampler):
    """Samples ``read_watts`` every ``interval_s`` on a thread while the region runs."""

    def __init__(
        self,
        read_watts: Callable[[], float],
        interval_s: float = 0.02,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(interval_s, name="genbench-power")
        self.read_watts = read_watts
        self.clock = clock
        self.times: list[float] = []
        self.watts: list[float] = []

    def sample(self) -> None:
        self.times.append(self.clock())
        self.watts.append(self.read_watts())

    def reading(self) -> EnergyReading:
        return integrate(self.times, self.watts)


class EnergyMeter:
    """Energy between `start()` and `stop()`, from the better of two sources.

    Integrated power when the power reading is instantaneous (``prefer_counter=False``):
    at 50 Hz it resolves a one-second window well. Otherwise the energy counter's
    difference: exact in total but updated only every ~20-100 ms, and NVML's
    non-instantaneous power is a trailing one-second average, worse still. Each source
    stands in when the other is unreadable. `stop()` always joins the sampling thread.
    """

    def __init__(
        self,
        read_watts: Callable[[], float],
        read_energy_j: Callable[[], float],
        prefer_counter: bool = True,
        interval_s: float = 0.02,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.read_energy_j = read_energy_j
        self.prefer_counter = prefer_counter
        self.clock = clock
        self._sampler = PowerSampler(read_watts, interval_s, clock)
        self._start: tuple[float, float] | None = None
        self._end: tuple[float, float] | None = None

    def start(self) -> None:
        self._start = (self.clock(), self.read_energy_j())
        self._sampler.__enter__()

    def stop(self) -> None:
        if self._start is None or self._end is not None:
            return
        self._sampler.__exit__(None, None, None)
        self._end = (self.clock(), self.read_energy_j())

    def reading(self) -> EnergyReading | None:
        """None if the meter never started, or neither source gave a number."""
        if self._start is None or self._end is None:
            return None
        (t0, e0), (t1, e1) = self._start, self._end
        joules = e1 - e0
        counter = (
            EnergyReading(joules, t1 - t0, len(self._sampler.times), source="energy-counter")
            if not math.isnan(joules) and joules > 0
            else None
        )
        integral = self._sampler.reading()
        usable = integral if not math.isnan(integral.joules) and integral.joules > 0 else None
        first, second = (counter, usable) if self.prefer_counter else (usable, counter)
        return first or second


@dataclass(frozen=True)
class EnergyWindow(RowPart):
    """The energy of ``calls`` back-to-back calls of ``items_per_call`` items each: a cell's energy columns."""

    reading: EnergyReading
    calls: int
    items_per_call: int

    COLUMNS: ClassVar[tuple[str, ...]] = ("energy_j_per_item", "avg_power_w")

    @property
    def joules_per_item(self) -> float:
        return self.reading.joules / (self.calls * self.items_per_call)

    def columns(self) -> dict[str, Any]:
        return {"energy_j_per_item": self.joules_per_item, "avg_power_w": self.reading.avg_power_w}

    def note(self) -> str:
        return f"energy={self.reading.source} over {self.calls} calls"
