"""The roofline bound, and what a pipeline needs in memory, from its cells' recorded work.

Everything comes from the results table (``gflops_per_item`` and the bytes-moved
columns of schema 3), so a projection works for any model a run measured, a
user's own included, and never rebuilds one.

- Traffic (``Traffic.from_row``): bytes moved per call are ``per_item * batch +
  fixed`` at the row's precision (see ``bench.measure.work`` for how they are
  traced: every op output written and read once, weights once per call, no caches:
  an upper bound). The bound at any batch follows from one row.
- Roofline (``roofline``): items/s <= min(peak / FLOPs per item, bandwidth / bytes
  per item), with the device's dense peak for the precision the pipeline runs in
  (``peak_precision``: ``bench.core.precision.peak_key``, the mapping the run's
  ``pct_of_peak`` uses too) and its memory bandwidth.
- Memory (``max_batch``): weights (the row's ``model_bytes``, as stored) +
  activations (peak of live op outputs, plus the inputs) x (1 + WORKSPACE_FRACTION)
  + a fixed runtime reserve (CUDA context, cuBLAS/cuDNN workspaces, allocator
  slack: 1 GiB on a GPU; interpreter and libraries: 0.5 GiB on a CPU) must fit in
  the target's memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.core.precision import peak_key
from bench.hardware.catalog import DeviceSpec

WORKSPACE_FRACTION = 0.10
GIB = 2.0**30
MB = 1e6
RUNTIME_RESERVE_BYTES: dict[str, float] = {"gpu": 1.0 * GIB, "accelerator": 1.0 * GIB, "cpu": 0.5 * GIB}
#: the cells-table columns a traffic profile is read from
TRAFFIC_COLUMNS = ("mb_moved_per_item", "mb_moved_fixed", "activation_mb_per_item", "activation_mb_fixed")


@dataclass(frozen=True)
class Traffic:
    """Bytes one call of a pipeline moves and holds, at its precision, split into per-item and fixed parts."""

    moved_per_item: float
    moved_fixed: float
    activations_per_item: float
    activations_fixed: float
    weights: float

    def bytes_per_item(self, batch: int) -> float:
        return self.moved_per_item + self.moved_fixed / batch

    def activation_bytes(self, batch: int) -> float:
        return self.activations_per_item * batch + self.activations_fixed

    @classmethod
    def from_row(cls, row: Any) -> Traffic | str:
        """A cell's traffic, or why the row has none (a run from before schema 3, a model traced nowhere)."""
        values = [_number(getattr(row, c, math.nan)) for c in (*TRAFFIC_COLUMNS, "model_bytes")]
        if any(math.isnan(v) for v in values[:-1]):
            return (
                "the run records no bytes moved for this cell (a run from before schema 3, or a model "
                "the run could not trace: its notes say)"
            )
        if math.isnan(values[-1]):
            return "the run records no model size for this cell (its artifact does not say how big it is)"
        moved_at_batch, moved_fixed, act_item, act_fixed, weights = values
        batch = int(row.batch_size)
        return cls(
            moved_per_item=(moved_at_batch - moved_fixed / batch) * MB,
            moved_fixed=moved_fixed * MB,
            activations_per_item=act_item * MB,
            activations_fixed=act_fixed * MB,
            weights=weights,
        )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class Roofline:
    items_s: float  # the bound
    bound: str  # "compute" | "memory"
    intensity: float  # FLOP per byte moved
    ridge: float  # FLOP per byte where the roofs meet (peak / bandwidth)


def roofline(
    flops_per_item: float, bytes_per_item: float, peak_flops: float, bandwidth_bytes_s: float
) -> Roofline:
    """The roofline bound on items/s: compute-bound above the ridge point, memory-bound below."""
    compute = peak_flops / flops_per_item if flops_per_item > 0 else math.inf
    memory = bandwidth_bytes_s / bytes_per_item if bytes_per_item > 0 else math.inf
    intensity = flops_per_item / bytes_per_item if bytes_per_item > 0 else math.inf
    bound = "compute" if compute <= memory else "memory"
    return Roofline(min(compute, memory), bound, intensity, peak_flops / bandwidth_bytes_s)


def peak_precision(precision: str, device: DeviceSpec, fp32_as: str = "tf32") -> tuple[str | None, str]:
    """Which peak of ``device`` a pipeline in ``precision`` runs at: (peak key, "") or (None, why not)."""
    key = peak_key(precision, has_tf32=device.peak.get("tf32") is not None, fp32_as=fp32_as)
    if key is None:
        return None, f"precision {precision!r} has no peak mapping"
    if device.peak.get(key) is None:
        why = device.unsupported.get(key, "not measured or not supported")
        return None, f"{device.label} has no {key} peak ({why})"
    return key, ""


def memory_needed(traffic: Traffic, batch: int, kind: str) -> float:
    """Bytes needed on the target: weights + activations x (1 + workspace fraction) + runtime reserve."""
    activations = traffic.activation_bytes(batch) * (1.0 + WORKSPACE_FRACTION)
    return traffic.weights + activations + RUNTIME_RESERVE_BYTES.get(kind, GIB)


def max_batch(traffic: Traffic, memory_bytes: float, kind: str) -> int:
    """The largest batch with ``memory_needed <= memory_bytes``; 0 when not even batch 1 fits."""
    fixed = memory_needed(traffic, 0, kind)
    per_item = memory_needed(traffic, 1, kind) - fixed
    room = memory_bytes - fixed
    if room < per_item:
        return 0
    if per_item <= 0:
        return 2**31 - 1
    batch = int(room // per_item)
    while batch > 0 and memory_needed(traffic, batch, kind) > memory_bytes:  # float rounding
        batch -= 1
    return batch
