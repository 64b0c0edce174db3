"""What NVML says about a cell: clocks and temperature at the edges of the timed region,
this process's device memory, and the energy of a window of back-to-back calls.

The energy is measured over its own window, at least ``ENERGY_WINDOW_S`` long, right
after the timed region: a GPU's timed region can be a few milliseconds (the median
converges fast), far below what NVML's power and energy readings resolve. Everything
stays NaN on CPU, where there is no portable power reading, and where NVML is missing
or refuses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.core.columns import RowPart
from bench.measure.energy import EnergyMeter, EnergyWindow
from bench.measure.nvml import GpuState, Nvml

#: the least time over which a GPU cell's energy is measured
ENERGY_WINDOW_S = 1.0
_NO_STATE = GpuState(sm_clock_mhz=math.nan, temperature_c=math.nan)


@dataclass(frozen=True)
class GpuObservation(RowPart):
    """A cell's NVML columns: process memory, SM clock and temperature at both edges of the timed region."""

    nvml_process_mem_mb: float
    start: GpuState
    end: GpuState

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "nvml_process_mem_mb", "sm_clock_mhz_start", "sm_clock_mhz_end", "gpu_temp_c_start", "gpu_temp_c_end",
    )  # fmt: skip

    def columns(self) -> dict[str, Any]:
        return {
            "nvml_process_mem_mb": self.nvml_process_mem_mb,
            "sm_clock_mhz_start": self.start.sm_clock_mhz,
            "sm_clock_mhz_end": self.end.sm_clock_mhz,
            "gpu_temp_c_start": self.start.temperature_c,
            "gpu_temp_c_end": self.end.temperature_c,
        }


class GpuWatch:
    """Reads NVML at the edges of the timed region (``timed_start``/``timed_end``) and meters an energy window."""

    def __init__(self, nvml: Nvml | None, synchronize: Callable[[], None]) -> None:
        self._nvml = nvml
        self._synchronize = synchronize
        self._start = self._end = _NO_STATE
        self._process_mem_mb = math.nan

    def timed_start(self) -> None:
        if self._nvml:
            self._start = self._nvml.state()

    def timed_end(self) -> None:
        if self._nvml:
            self._end = self._nvml.state()
            self._process_mem_mb = self._nvml.process_memory_mb()

    def observation(self) -> GpuObservation:
        return GpuObservation(self._process_mem_mb, self._start, self._end)

    def measure_energy(self, call: Callable[[], Any], items_per_call: int) -> EnergyWindow | None:
        """Run ``call`` back to back, one at a time, for at least ENERGY_WINDOW_S under an energy meter."""
        if self._nvml is None:
            return None
        meter = EnergyMeter(
            self._nvml.power_w, self._nvml.energy_j, prefer_counter=not self._nvml.has_instant_power
        )
        self._synchronize()
        calls = 0
        meter.start()
        try:
            t0 = time.perf_counter()
            while calls == 0 or time.perf_counter() - t0 < ENERGY_WINDOW_S:
                call()
                self._synchronize()  # one call at a time, as in the timed region
                calls += 1
        finally:
            meter.stop()
        reading = meter.reading()
        return EnergyWindow(reading, calls, items_per_call) if reading is not None else None
