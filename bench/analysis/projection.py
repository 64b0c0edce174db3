"""Roofline projection of a measured run onto hardware you do not own.

The method, in four steps, each with its assumption stated where it is made:

1. **Work and traffic per item** (``profile_model``). FLOPs per item come from
   the run (``gflops_per_item``, counted by torch's FLOP counter). Bytes moved
   are estimated from the model's traced graph: the fp32 model runs once on the
   meta device under a ``TorchDispatchMode`` that sees every aten op. Each op's
   output tensors are counted as written once and read once (2x their bytes);
   views move nothing; in-place ops rewrite their tensor (2x as well). Weights
   are read once per batch and inputs once. The trace runs at batch 1 and 2, so
   traffic splits into a per-item part and a fixed part. Byte counts scale with
   the element size of the pipeline's precision (4 bytes fp32, 2 bf16/fp16, 1
   int8/fp8). This ignores caches (it is the traffic of a machine with no reuse
   across ops, an upper bound; a GPU's L2 or a fused kernel moves less) and
   counts attention's score matrix as materialized (flash kernels do not).
2. **Roofline bound** (``roofline``): items/s <= min(peak / FLOPs per item,
   bandwidth / bytes per item), with the device's dense peak for the precision
   the pipeline runs in (``peak_precision``) and its memory bandwidth.
3. **Calibration** (``efficiencies``): on the device the run was measured on,
   each cell's efficiency is its measured items/s over that device's roofline
   bound: the achieved fraction of its peak when compute-bound, of its bandwidth
   when memory-bound. The measured device is matched to a catalogue entry by
   its ``device_name`` (key or alias; per-core CPU entries are scaled by the run's
   torch thread count), or, for a device the catalogue lacks, it is described by
   the peak ``bench.hardware.peak`` measured on it (cached, or measured now if the run was
   made on this machine). See ``resolve_source``.
4. **Projection** (``project``): target items/s = efficiency x the target's
   roofline bound at the target batch size. ASSUMPTION: a model and pipeline
   reach the same fraction of the roofline bound on the target as on the
   measured device. That is a strong assumption across architectures (a 2-core
   CPU and an H100 differ in launch overheads, kernel libraries, and how small
   a batch fills them), so the number is an estimate with a band: the central
   efficiency is that of the same pipeline at the nearest measured batch size
   (log scale); the band spans the min..max efficiency over every batch size
   and every pipeline of the same precision family (fp32, channels_last,
   compile... share "fp32") of the model. The band shows the spread seen on the
   measured device, not the cross-architecture uncertainty, which only a
   measured run on the target (``add_check``) can show.
   Two exceptions are made explicit in each row's ``reason``: a precision that
   is emulated on the measured device (bf16 on an AVX2 CPU: its GEMM peak is
   below fp32's) but native on the target is calibrated with the model's fp32
   cells (``emulated``); and a cell below ``OVERHEAD_BOUND_EFFICIENCY`` of its
   roofline bound is limited by per-call overhead, which the roofline does not
   model, so its projections are flagged unreliable.

Memory (``max_batch``): weights + activations (the peak of live op outputs in
the trace, plus the inputs) x (1 + ``WORKSPACE_FRACTION``) + a fixed runtime
reserve (CUDA context, cuBLAS/cuDNN workspaces, allocator slack: 1 GiB on a
GPU; interpreter and libraries: 0.5 GiB on a CPU) must fit in the target's memory.

Precision mapping (``peak_precision``): fp32 pipelines use the TF32 peak on
targets that have it (``fp32_as="tf32"``, the default) because PyTorch leaves
cuDNN's TF32 on by default (``torch.backends.cudnn.allow_tf32 = True``) and these
models' FLOPs are convolutions; pass ``fp32_as="fp32"`` for the CUDA-core peak
(strict fp32, or matmul-heavy models, whose TF32 is off by default). bf16/fp16
use the 16-bit tensor-core peak (FP32 accumulate), int8 the int8 peak, fp8 the
fp8 peak. A target without the precision gives an ``unsupported`` row.

Cost columns: items/s per 1000 USD of purchase price, USD per million items at
the cloud price per hour, items per joule at TDP (a device drawing less than
TDP does better, so it is a lower bound on energy efficiency).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.hardware.catalog import Catalog, DeviceSpec, Figure

if TYPE_CHECKING:
    import pandas as pd

    from bench.hardware.peak import PeakResult
    from reference_models.spec import ModelSpec

ELEMENT_BYTES: dict[str, int] = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}
WORKSPACE_FRACTION = 0.10
#: below this fraction of the roofline bound, a measured cell is limited by per-call overhead (Python,
#: dispatch, thread wake-ups), which the roofline does not model: its rows are flagged as unreliable
OVERHEAD_BOUND_EFFICIENCY = 0.01
GIB = 2.0**30
RUNTIME_RESERVE_BYTES: dict[str, float] = {"gpu": 1.0 * GIB, "accelerator": 1.0 * GIB, "cpu": 0.5 * GIB}

#: columns of projection.csv, units in the names (tidy: one row per model x pipeline x target x batch)
PROJECTION_COLUMNS: tuple[str, ...] = (
    "source_run", "source_device_name", "source_peak", "model", "size", "family", "item", "pipeline",
    "precision", "target", "target_name", "target_kind", "target_precision", "batch_size", "status", "reason",
    "calibrated_from", "gflops_per_item", "mb_moved_per_item", "arithmetic_intensity_flop_per_byte",
    "ridge_flop_per_byte", "bound", "target_peak_tflops", "target_bandwidth_gb_s", "roofline_items_s",
    "efficiency", "efficiency_lo", "efficiency_hi", "throughput_items_s", "throughput_items_s_lo",
    "throughput_items_s_hi", "latency_ms", "latency_ms_lo", "latency_ms_hi", "mem_needed_gib",
    "target_mem_gib", "fits", "max_batch", "items_s_per_kusd", "usd_per_million_items", "items_per_joule",
    "measured_items_s", "error_pct", "in_band",
)  # fmt: skip


# ----------------------------------------------------------------- traffic and memory of a model
@dataclass(frozen=True)
class ModelProfile:
    """Element counts from a traced forward call; bytes follow from a precision's element size."""

    model: str
    size: str
    weight_elems: float  # parameters + buffers, read once per batch
    input_elems_per_item: float
    written_elems_per_item: float  # op outputs, each written once and read once
    written_elems_fixed: float  # the batch-independent part (e.g. embeddings of constants)
    live_elems_per_item: float  # peak of live op outputs during the call
    live_elems_fixed: float
    n_ops: int

    def weight_bytes(self, precision: str) -> float:
        return ELEMENT_BYTES[precision] * self.weight_elems

    def bytes_per_item(self, precision: str, batch: int) -> float:
        """Bytes moved per item at ``batch``: weights/batch + inputs + 2 x op outputs."""
        elems = (
            self.weight_elems / batch
            + self.input_elems_per_item
            + 2.0 * (self.written_elems_per_item + self.written_elems_fixed / batch)
        )
        return ELEMENT_BYTES[precision] * elems

    def activation_bytes(self, precision: str, batch: int) -> float:
        elems = batch * (self.live_elems_per_item + self.input_elems_per_item) + self.live_elems_fixed
        return ELEMENT_BYTES[precision] * elems


class _TrafficTrace:
    """Counts bytes of op outputs and the peak of live outputs, via a TorchDispatchMode.

    Built lazily (torch imported inside) so this module stays light to import.
    """

    def __init__(self) -> None:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        trace = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                trace.n_ops += 1
                returns = func._schema.returns
                tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
                if any(r.alias_info is not None and not r.alias_info.is_write for r in returns):
                    return out  # a view: no bytes move
                written_in_place = any(r.alias_info is not None for r in returns)
                for t in tensors:
                    nbytes = t.numel() * t.element_size()
                    trace.written += nbytes
                    if not written_in_place:  # in-place rewrites memory already counted as live
                        trace.live += nbytes
                        trace.peak = max(trace.peak, trace.live)
                        weakref.finalize(t, trace._free, nbytes)
                return out

        self.mode = Mode()
        self.written = 0
        self.live = 0
        self.peak = 0
        self.n_ops = 0

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes


@functools.cache
def profile_model(spec: ModelSpec, size: str) -> ModelProfile:
    """Trace ``spec`` at ``size`` on the meta device (no weights allocated, no real compute)."""
    import torch

    module = spec.build(size).to("meta")
    weights = sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())
    counts: dict[int, tuple[float, float, float, int]] = {}
    for batch in (1, 2):
        inputs = tuple(t.to("meta") for t in spec.example_inputs(batch, size, 0))
        trace = _TrafficTrace()
        with torch.inference_mode(), trace.mode:
            out = module(*inputs)
        del out
        input_bytes = sum(t.numel() * t.element_size() for t in inputs)
        counts[batch] = (trace.written / 4.0, trace.peak / 4.0, input_bytes / 4.0, trace.n_ops)
    (w1, l1, i1, n_ops), (w2, l2, i2, _) = counts[1], counts[2]
    return ModelProfile(
        model=spec.name,
        size=size,
        weight_elems=float(weights),
        input_elems_per_item=i2 - i1,
        written_elems_per_item=w2 - w1,
        written_elems_fixed=max(0.0, 2 * w1 - w2),
        live_elems_per_item=l2 - l1,
        live_elems_fixed=max(0.0, 2 * l1 - l2),
        n_ops=n_ops,
    )


# ----------------------------------------------------------------- roofline
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
    if precision in ("fp32", "tf32"):
        wants_tf32 = precision == "tf32" or fp32_as == "tf32"
        if wants_tf32 and device.peak.get("tf32") is not None:
            return "tf32", ""
        return "fp32", ""
    if precision not in ELEMENT_BYTES:
        return None, f"precision {precision!r} has no peak mapping"
    if device.peak.get(precision) is None:
        why = device.unsupported.get(precision, "not measured or not supported")
        return None, f"{device.label} has no {precision} peak ({why})"
    return precision, ""


# ----------------------------------------------------------------- memory
def memory_needed(profile: ModelProfile, precision: str, batch: int, kind: str) -> float:
    """Bytes needed on the target: weights + activations x (1 + workspace fraction) + runtime reserve."""
    activations = profile.activation_bytes(precision, batch) * (1.0 + WORKSPACE_FRACTION)
    return profile.weight_bytes(precision) + activations + RUNTIME_RESERVE_BYTES.get(kind, GIB)


def max_batch(profile: ModelProfile, precision: str, memory_bytes: float, kind: str) -> int:
    """The largest batch with ``memory_needed <= memory_bytes``; 0 when not even batch 1 fits."""
    fixed = memory_needed(profile, precision, 0, kind)
    per_item = memory_needed(profile, precision, 1, kind) - fixed
    room = memory_bytes - fixed
    if room < per_item:
        return 0
    if per_item <= 0:
        return 2**31 - 1
    batch = int(room // per_item)
    while batch > 0 and memory_needed(profile, precision, batch, kind) > memory_bytes:  # float rounding
        batch -= 1
    return batch


# ----------------------------------------------------------------- the measured device
def spec_from_peak(result: PeakResult) -> DeviceSpec:
    """A measured peak as a DeviceSpec (no price, no TDP: those are not measurable here)."""
    source = f"measured by bench.hardware.peak on {result.measured_at} ({result.threads or 'all'} threads, torch {result.torch_version})"
    peak: dict[str, Figure | None] = {}
    unsupported: dict[str, str] = {}
    for precision in ("fp32", "tf32", "fp16", "bf16", "fp8", "int8"):
        rate = result.flops.get(precision)
        if rate:
            peak[precision] = Figure(
                value=rate, unit="TOPS" if precision == "int8" else "TFLOPS", source=source
            )
        else:
            peak[precision] = None
            unsupported[precision] = result.skipped.get(precision, "not measured")
    return DeviceSpec(
        key=f"measured:{result.device}",
        name=f"{result.device_name} (measured)",
        kind="gpu" if result.kind == "cuda" else "cpu",
        per="device",
        peak=peak,
        memory=Figure(value=float(result.memory_bytes), unit="GiB", source=source),
        memory_bandwidth=Figure(value=result.copy_bytes_s, unit="GB/s", source=f"copy bandwidth, {source}"),
        unsupported=unsupported,
        origin="measured",
    )


@dataclass(frozen=True)
class Source:
    """The device a run was measured on, as projection sees it, and how it was identified."""

    spec: DeviceSpec
    how: str


def resolve_source(
    device_name: str,
    device: str,
    threads: int | None,
    catalog: Catalog,
    mode: str = "auto",
    measure_here: bool = True,
) -> Source:
    """Identify the run's device: a catalogue entry (``mode`` auto/catalog) or a measured peak (auto/measured).

    - catalogue: ``device_name`` equal to an entry's key or alias. A per-core CPU
      entry is scaled by ``threads`` (the run's torch thread count, from env.json),
      because the run used that many cores.
    - measured: the cached ``bench.hardware.peak`` result for ``device_name``; if none is
      cached and the run's device is this machine's (same name), it is measured
      now (``measure_here``). A peak cached with another thread count than the run
      used is used anyway, and ``how`` says so.

    Raises ValueError (one line) when neither applies.
    """
    from bench.hardware import peak as peak_mod

    if mode in ("auto", "catalog"):
        spec = catalog.match(device_name)
        if spec is not None:
            if spec.per == "core":
                if not threads:
                    raise ValueError(f"{spec.key} is a per-core entry and the run records no thread count")
                spec = spec.times(threads)
            return Source(spec, f"catalogue entry {spec.label} ({spec.name})")
        if mode == "catalog":
            raise ValueError(
                f"the run's device {device_name!r} is not in the catalogue; add it with --catalog FILE"
            )
    result = peak_mod.read_cached(device_name)
    note = "cached"
    if result is None and measure_here:
        from bench.core.device import check_available, parse_device
        from bench.core.device import device_name as local_name

        try:
            here = parse_device(device)
            check_available(here)
            same_machine = local_name(here) == device_name
        except ValueError:  # another kind of device than this machine has
            same_machine = False
        if same_machine:
            result = peak_mod.measured_peak(here)
            note = "measured now"
    if result is None:
        raise ValueError(
            f"the run's device {device_name!r} is not in the catalogue and has no measured peak; "
            f"run `python -m bench peak` on that machine, or add it with --catalog FILE"
        )
    how = f"measured peak of {device_name} ({note}, {result.measured_at})"
    if threads and result.threads and threads != result.threads:
        how += f"; WARNING: peak measured with {result.threads} threads, the run used {threads}"
    return Source(spec_from_peak(result), how)


# ----------------------------------------------------------------- calibration
def efficiencies(
    cells: pd.DataFrame,
    profiles: dict[tuple[str, str], ModelProfile | str],
    source: DeviceSpec,
    fp32_as: str = "tf32",
) -> pd.DataFrame:
    """One row per ok cell: its measured items/s over the source device's roofline bound.

    Cells whose precision the source has no peak for get NaN efficiency (they
    cannot calibrate anything) and say why in ``reason``.
    """
    import pandas as pd

    rows = []
    ok = cells[
        (cells["status"] == "ok") & cells["throughput_items_s"].notna() & cells["gflops_per_item"].notna()
    ]
    for cell in ok.itertuples(index=False):
        profile = profiles.get((cell.model, cell.size))
        precision = str(cell.precision) if not pd.isna(cell.precision) else "fp32"
        efficiency, reason = math.nan, ""
        key, why = peak_precision(precision, source, fp32_as)
        if not isinstance(profile, ModelProfile):
            reason = profile or "no traffic profile"
        elif key is None:
            reason = why
        elif precision not in ELEMENT_BYTES:
            reason = f"precision {precision!r} unknown"
        else:
            flops = float(cell.gflops_per_item) * 1e9
            peak_flops = source.peak_flops(key)
            assert peak_flops is not None
            bound = roofline(
                flops,
                profile.bytes_per_item(precision, int(cell.batch_size)),
                peak_flops,
                source.bandwidth_bytes_s,
            )
            efficiency = float(cell.throughput_items_s) / bound.items_s
        rows.append(
            {
                "model": cell.model,
                "size": cell.size,
                "family": cell.family,
                "item": cell.item,
                "pipeline": cell.pipeline,
                "precision": precision,
                "batch_size": int(cell.batch_size),
                "gflops_per_item": float(cell.gflops_per_item),
                "throughput_items_s": float(cell.throughput_items_s),
                "efficiency": efficiency,
                "reason": reason,
            }
        )
    return pd.DataFrame(rows)


def _nearest(batches: Iterable[int], batch: int) -> int | None:
    """The measured batch size nearest to ``batch`` on a log scale (ties: the smaller)."""
    options = sorted(set(batches))
    if not options:
        return None
    return min(options, key=lambda b: (abs(math.log2(b) - math.log2(batch)), b))


# ----------------------------------------------------------------- projection
def project(
    cells: pd.DataFrame,
    profiles: dict[tuple[str, str], ModelProfile | str],
    source: Source,
    targets: list[DeviceSpec],
    batch_sizes: tuple[int, ...] | None = None,
    fp32_as: str = "tf32",
    holdout: bool = False,
    source_run: str = "",
) -> pd.DataFrame:
    """The projection table: one row per (target, model, size, pipeline, batch size).

    ``batch_sizes`` defaults to those measured in the run. ``holdout`` calibrates
    each row without the cells measured at its own batch size, so a check against
    measured cells shows predictive error rather than a round trip.
    """
    import pandas as pd

    eff = efficiencies(cells, profiles, source.spec, fp32_as)
    if eff.empty:
        raise ValueError("the run has no ok cells to calibrate from")
    device_names = cells["device_name"].dropna().unique()
    device_name = str(device_names[0]) if len(device_names) else ""
    wanted = tuple(sorted(set(batch_sizes))) if batch_sizes else tuple(sorted(eff["batch_size"].unique()))
    rows: list[dict[str, Any]] = []
    for target in targets:
        for (model, size, _pipeline), group in eff.groupby(["model", "size", "pipeline"], sort=False):
            first = group.iloc[0]
            precision = str(first["precision"])
            profile = profiles.get((model, size))
            key, unsupported = peak_precision(precision, target, fp32_as)
            calibrating, band_cells, note = _calibration_cells(
                eff, group, precision, source.spec, target, fp32_as
            )
            for batch in wanted:
                row = _base_row(source_run, device_name, source, target, first, batch)
                rows.append(row)
                if not isinstance(profile, ModelProfile):
                    row.update(status="no-profile", reason=profile or "no traffic profile")
                    continue
                if key is None:
                    row.update(status="unsupported", reason=unsupported)
                    continue
                usable = calibrating[calibrating["batch_size"] != batch] if holdout else calibrating
                band = band_cells[band_cells["batch_size"] != batch] if holdout else band_cells
                near = _nearest(usable["batch_size"], batch)
                if near is None:
                    reasons = [r for r in group["reason"] if r]
                    why = reasons[0] if reasons else "no other batch size measured (holdout)"
                    row.update(status="no-calibration", reason=why)
                    continue
                central = usable[usable["batch_size"] == near].iloc[0]
                _fill(row, profile, target, key, precision, batch, central, band, note)
    return pd.DataFrame(rows, columns=list(PROJECTION_COLUMNS))


def emulated(device: DeviceSpec, precision: str) -> bool:
    """True when ``device`` runs ``precision`` slower than fp32: no native support, converted op by op.

    Only measured peaks show this (a CPU without AVX512-BF16/AMX reaches ~1 GFLOP/s
    in bf16 GEMM against ~100 in fp32); a catalogue entry lists native rates only.
    """
    if precision not in ("fp16", "bf16", "fp8", "int8"):
        return False
    rate, fp32 = device.peak_flops(precision), device.peak_flops("fp32")
    return rate is not None and fp32 is not None and rate < fp32


def _calibration_cells(
    eff: pd.DataFrame,
    group: pd.DataFrame,
    precision: str,
    source: DeviceSpec,
    target: DeviceSpec,
    fp32_as: str,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The cells that calibrate a pipeline's rows (central, band) and a note when they are substitutes.

    Normally the pipeline's own cells (central) and every cell of its precision
    family (band). When the precision is emulated on the measured device but
    native on the target, its cells measure the emulation, not how well kernels
    use the hardware, and would transfer an absurd efficiency (relative to a
    ~1 GFLOP/s "peak"); such rows are calibrated with the model's fp32 cells
    instead, and say so.
    """
    model, size = group.iloc[0]["model"], group.iloc[0]["size"]
    same_model = eff[(eff["model"] == model) & (eff["size"] == size) & eff["efficiency"].notna()]
    own = group[group["efficiency"].notna()]
    family = same_model[same_model["precision"] == precision]
    if not (emulated(source, precision) and not emulated(target, precision)):
        return own, family, ""
    fp32_family = same_model[same_model["precision"] == "fp32"]
    baseline = fp32_family[fp32_family["pipeline"] == "fp32"]
    central = baseline if not baseline.empty else fp32_family
    src_rate, src_fp32 = source.peak_flops(precision), source.peak_flops("fp32")
    note = (
        f"{precision} is emulated on the measured device ({(src_rate or 0) / 1e9:.3g} vs fp32 "
        f"{(src_fp32 or 0) / 1e9:.3g} GFLOP/s): calibrated with the fp32 cells' efficiency"
    )
    return central, fp32_family, note


def _base_row(
    source_run: str, device_name: str, source: Source, target: DeviceSpec, first: Any, batch: int
) -> dict[str, Any]:
    return {
        "source_run": source_run,
        "source_device_name": device_name,
        "source_peak": source.how,
        "model": first["model"],
        "size": first["size"],
        "family": first["family"],
        "item": first["item"],
        "pipeline": first["pipeline"],
        "precision": first["precision"],
        "target": target.label,
        "target_name": target.name,
        "target_kind": target.kind,
        "batch_size": batch,
        "status": "ok",
        "reason": "",
        "target_mem_gib": target.memory_bytes / GIB,
        "target_bandwidth_gb_s": target.bandwidth_bytes_s / 1e9,
    }


def _fill(
    row: dict[str, Any],
    profile: ModelProfile,
    target: DeviceSpec,
    key: str,
    precision: str,
    batch: int,
    central: Any,
    band_cells: pd.DataFrame,
    note: str = "",
) -> None:
    peak_flops = target.peak_flops(key)
    assert peak_flops is not None
    flops = float(central["gflops_per_item"]) * 1e9
    moved = profile.bytes_per_item(precision, batch)
    bound = roofline(flops, moved, peak_flops, target.bandwidth_bytes_s)
    efficiency = float(central["efficiency"])
    lo = min(float(band_cells["efficiency"].min()), efficiency)
    hi = max(float(band_cells["efficiency"].max()), efficiency)
    items, items_lo, items_hi = (e * bound.items_s for e in (efficiency, lo, hi))
    needed = memory_needed(profile, precision, batch, target.kind)
    largest = max_batch(profile, precision, target.memory_bytes, target.kind)
    fits = batch <= largest
    notes = [note] if note else []
    if efficiency < OVERHEAD_BOUND_EFFICIENCY:
        notes.append(
            f"efficiency {efficiency:.1e} on the measured device: per-call overhead, not the roofline, "
            "limits it there, so this projection is unreliable"
        )
    row["reason"] = "; ".join(notes)
    row.update(
        target_precision=key,
        calibrated_from=f"{central['pipeline']}@{int(central['batch_size'])}",
        gflops_per_item=flops / 1e9,
        mb_moved_per_item=moved / 1e6,
        arithmetic_intensity_flop_per_byte=bound.intensity,
        ridge_flop_per_byte=bound.ridge,
        bound=bound.bound,
        target_peak_tflops=peak_flops / 1e12,
        roofline_items_s=bound.items_s,
        efficiency=efficiency,
        efficiency_lo=lo,
        efficiency_hi=hi,
        mem_needed_gib=needed / GIB,
        fits=fits,
        max_batch=largest,
    )
    if not fits:
        row.update(
            status="does-not-fit",
            reason=f"needs {needed / GIB:.1f} GiB of {target.memory_bytes / GIB:.1f} GiB; largest batch {largest}",
        )
        return
    row.update(
        throughput_items_s=items,
        throughput_items_s_lo=items_lo,
        throughput_items_s_hi=items_hi,
        latency_ms=batch / items * 1e3,
        latency_ms_lo=batch / items_hi * 1e3,
        latency_ms_hi=batch / items_lo * 1e3,
    )
    if target.price is not None:
        row["items_s_per_kusd"] = items / (target.price.value / 1000.0)
    if target.cloud_price is not None:
        row["usd_per_million_items"] = target.cloud_price.value / 3600.0 / items * 1e6
    if target.tdp is not None:
        row["items_per_joule"] = items / target.tdp.value


# ----------------------------------------------------------------- checking against a measured run
def add_check(projection: pd.DataFrame, measured: pd.DataFrame, target_label: str) -> pd.DataFrame:
    """Fill measured_items_s, error_pct (projected/measured - 1, in %) and in_band for ``target_label``'s rows.

    ``measured`` is the cells table of a run made on that target; rows match on
    model, size, pipeline and batch size, ok cells only.
    """
    import pandas as pd

    frame = projection.copy()
    ok = measured[(measured["status"] == "ok") & measured["throughput_items_s"].notna()]
    lookup = {
        (r.model, r.size, r.pipeline, int(r.batch_size)): float(r.throughput_items_s)
        for r in ok.itertuples(index=False)
    }
    measured_col, error_col, band_col = [], [], []
    for row in frame.itertuples(index=False):
        value = lookup.get((row.model, row.size, row.pipeline, int(row.batch_size)))
        projected = row.throughput_items_s
        if row.target != target_label or value is None or _isnan(projected):
            measured_col.append(value if row.target == target_label else math.nan)
            error_col.append(math.nan)
            band_col.append(pd.NA)
            continue
        measured_col.append(value)
        error_col.append((float(projected) / value - 1.0) * 100.0)
        band_col.append(bool(row.throughput_items_s_lo <= value <= row.throughput_items_s_hi))
    frame["measured_items_s"] = pd.Series(measured_col, index=frame.index, dtype="float64")
    frame["error_pct"] = pd.Series(error_col, index=frame.index, dtype="float64")
    frame["in_band"] = pd.Series(band_col, index=frame.index, dtype="boolean")
    return frame


def _isnan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Column dtypes for writing: numbers as floats, flags as nullable booleans."""
    import pandas as pd

    out = frame.copy()
    for col in ("fits", "in_band"):
        out[col] = out[col].astype("boolean")
    for col in ("batch_size", "max_batch"):
        out[col] = pd.to_numeric(out[col]).astype("Int64")
    return out
