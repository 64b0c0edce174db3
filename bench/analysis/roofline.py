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

The generate and sample workloads have no traced traffic (one timed call is a whole
generation or sampling run); ``phase_work`` builds theirs from the row's own columns,
each phase with its own item (``PHASES``):

- decode (item: one new token of one sequence, 2 x params FLOPs): the bytes one decode
  step reads are measured, ``decode_gb_s x tpot_ms / 1e3`` GB (bench.measure.generation:
  every weight once plus the KV cache it attends over), split into the weights
  (``model_bytes``, read once per step whatever the batch: the fixed part) and the KV
  cache (the rest, per sequence). A step at batch B reads weights + B x KV: at small
  batches it is far below the ridge, memory-bound;
- prefill (item: one prompt token, 2 x params FLOPs): the weights read once for the
  whole prompt (fixed part: weights / prompt_len per sequence) and each token's keys and
  values written once (from ``kv_cache_mb``); activations between ops are not counted, so
  this is the lower bound of its traffic and prefill is compute-bound beyond a few dozen
  tokens x batch on most devices;
- sample (item: one image of a whole sampling run, the run's recorded FLOPs): no bytes
  traced, so the compute roof alone bounds it, and its memory is the weights alone (the
  row's reason says so).

Memory for both generate phases: weights + the KV cache (``kv_cache_mb``, per sequence).
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


#: the phases each workload's rows are projected as: a generate cell as its prefill and its decode
PHASES: dict[str, tuple[str, ...]] = {
    "forward": ("forward",),
    "sample": ("sample",),
    "generate": ("prefill", "decode"),
}
#: what a sampling row's reason says about its bound (no bytes moved are traced for a whole sampling run)
SAMPLE_NOTE = (
    "a sampling run's bytes are not traced: the compute roof alone bounds it, and its memory is the weights"
)


@dataclass(frozen=True)
class PhaseWork:
    """One phase of a cell as the roofline sees it: FLOPs and traffic per item, and the rate the run measured.

    ``items_per_sequence`` is how many items one call of the phase makes per batch entry:
    a prefill's prompt tokens, 1 for everything else (a forward call's item, an image, a
    decode step's token), so one call's time is ``batch x items_per_sequence / items_s``.
    """

    phase: str
    flops_per_item: float
    traffic: Traffic
    measured_items_s: float
    items_per_sequence: float = 1.0
    note: str = ""
    traced_bytes: bool = True  # False: no bytes moved are known (a sampling run), the compute roof alone


def phases_of(row: Any) -> tuple[str, ...]:
    """The phases a row is projected as; a row without a workload (before schema 5) is a forward call."""
    workload = getattr(row, "workload", None)
    workload = "forward" if workload is None or _missing(workload) else str(workload)
    return PHASES.get(workload, (workload,))


def phase_work(row: Any, phase: str) -> PhaseWork | str:
    """The phase's work from the row's columns (module docstring), or why the row cannot give it."""
    batch = int(row.batch_size)
    weights = _number(getattr(row, "model_bytes", math.nan))
    if phase in ("forward", "sample"):
        traffic = Traffic.from_row(row)
        if isinstance(traffic, str) and phase == "forward":
            return traffic
        flops = _number(getattr(row, "gflops_per_item", math.nan)) * 1e9
        if math.isnan(flops):
            return "the run records no FLOPs for this cell (its notes say why)"
        if isinstance(traffic, Traffic):
            return PhaseWork(phase, flops, traffic, _number(row.throughput_items_s))
        if math.isnan(weights):
            return "the run records no model size for this cell (its artifact does not say how big it is)"
        untraced = Traffic(0.0, 0.0, 0.0, 0.0, weights)
        return PhaseWork(
            phase, flops, untraced, _number(row.throughput_items_s), note=SAMPLE_NOTE, traced_bytes=False
        )
    params = _number(getattr(row, "params", math.nan))
    flops = (
        2.0 * params if not math.isnan(params) else _number(getattr(row, "gflops_per_item", math.nan)) * 1e9
    )
    kv_bytes = _number(getattr(row, "kv_cache_mb", math.nan)) * 2**20
    needed = {"model_bytes": weights, "params": flops, "kv_cache_mb": kv_bytes}
    if phase == "decode":
        tpot, gb_s = (
            _number(getattr(row, "tpot_ms", math.nan)),
            _number(getattr(row, "decode_gb_s", math.nan)),
        )
        needed.update(tpot_ms=tpot, decode_gb_s=gb_s)
    elif phase == "prefill":
        ttft, prompt = (
            _number(getattr(row, "ttft_ms", math.nan)),
            _number(getattr(row, "prompt_len", math.nan)),
        )
        new = _number(getattr(row, "new_tokens", math.nan))
        needed.update(ttft_ms=ttft, prompt_len=prompt, new_tokens=new)
    else:
        return f"no roofline for a {phase!r} phase"
    missing = [name for name, value in needed.items() if math.isnan(value)]
    if missing:
        return f"the run records no {', '.join(missing)} for this cell's {phase}"
    per_sequence_kv = kv_bytes / batch
    if phase == "decode":
        step_bytes = gb_s * 1e9 * tpot / 1e3  # weights + the KV cache one step reads, for the whole batch
        traffic = Traffic(
            moved_per_item=max(step_bytes - weights, 0.0) / batch,
            moved_fixed=weights,
            activations_per_item=per_sequence_kv,
            activations_fixed=0.0,
            weights=weights,
        )
        return PhaseWork(phase, flops, traffic, batch * 1e3 / tpot)
    held = prompt + new - (1 if str(getattr(row, "kv_cache", "static")) == "dynamic" else 0)
    traffic = Traffic(
        moved_per_item=per_sequence_kv / held if held > 0 else 0.0,  # each prompt token's keys and values
        moved_fixed=weights / prompt,  # the weights once per prefill: per sequence, spread over its tokens
        activations_per_item=per_sequence_kv,
        activations_fixed=0.0,
        weights=weights,
    )
    return PhaseWork(phase, flops, traffic, batch * prompt * 1e3 / ttft, items_per_sequence=prompt)


def _missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


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


def peak_precision(
    precision: str, device: DeviceSpec, fp32_as: str = "tf32", pipeline: str = ""
) -> tuple[str | None, str]:
    """Which peak of ``device`` a pipeline in ``precision`` runs at: (peak key, "") or (None, why not).

    ``pipeline`` (its text) says what an int8 weight-only pipeline computes in (bench.core.precision).
    """
    key = peak_key(
        precision, has_tf32=device.peak.get("tf32") is not None, fp32_as=fp32_as, pipeline=pipeline
    )
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
