"""Energy per item from sampled board power (NVML on NVIDIA GPUs, through bench.nvml).

A background thread reads power at >= 10 Hz while the timed region runs; energy
is the trapezoid integral of those readings over the sampled interval, divided
by the items processed. The power reader is injectable, so the integration and
threading are tested on CPU; the NVML reader needs a GPU and `nvidia-ml-py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.sampler import PeriodicSampler


@dataclass(frozen=True)
class EnergyReading:
    joules: float
    seconds: float
    n_samples: int

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
