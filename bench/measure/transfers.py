"""Host<->device copy times of a cell's inputs and output, measured apart from the forward (as trtexec does)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.core.columns import RowPart
from bench.measure.clocks import HostTimer

REPEATS = 5


@dataclass(frozen=True)
class Transfers(RowPart):
    """Median H2D (placing the inputs) and D2H (fetching the output) times; NaN on CPU, where nothing is copied."""

    h2d_ms: float = math.nan
    d2h_ms: float = math.nan
    included: bool = False  # whether the copies are also inside every timed call (--include-transfers)

    COLUMNS: ClassVar[tuple[str, ...]] = ("transfer_h2d_ms", "transfer_d2h_ms", "includes_transfers")

    def columns(self) -> dict[str, Any]:
        return {
            "transfer_h2d_ms": self.h2d_ms,
            "transfer_d2h_ms": self.d2h_ms,
            "includes_transfers": self.included,
        }


def measure_transfers(
    place_inputs: Callable[[], Any],
    fetch_output: Callable[[], Any],
    synchronize: Callable[[], None],
    included: bool,
) -> Transfers:
    """Time ``place_inputs`` and ``fetch_output`` REPEATS times each, synchronizing around every copy."""
    timer = HostTimer(synchronize=synchronize)
    h2d = [timer.measure(place_inputs) for _ in range(REPEATS)]
    d2h = [timer.measure(fetch_output) for _ in range(REPEATS)]
    return Transfers(float(statistics.median(h2d)), float(statistics.median(d2h)), included)
