"""Roofline projection of a measured run onto hardware you do not own, from the results table alone.

The method, in four steps, each with its assumption stated where it is made:

1. **Work and traffic per item**: read from the run. FLOPs per item
   (``gflops_per_item``) and bytes moved per item and per call (``mb_moved_*``,
   ``activation_mb_*``) were traced on each pipeline's own model during the run
   (``bench.measure.work``), so a pruned pipeline's are its own and a user's model
   projects as well as a reference one. Nothing is rebuilt here.
2. **Roofline bound** (``bench.analysis.roofline``): items/s <= min(peak / FLOPs per
   item, bandwidth / bytes per item), with the device's dense peak for the
   precision the pipeline runs in and its memory bandwidth.
3. **Calibration** (``efficiencies``): on the device the run was measured on,
   each cell's efficiency is its measured items/s over that device's roofline
   bound: the achieved fraction of its peak when compute-bound, of its bandwidth
   when memory-bound. The measured device is a catalogue entry matched by the run's
   ``device_name``, or the peak ``bench peak`` measured and cached on it
   (``bench.analysis.source``); a projection never measures a peak itself.
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

Targets genbench cannot measure on (a TPU, an AWS or Intel accelerator, an FPGA card, a
Jetson module: their kind's ``measurable`` is false in the catalogue) are **uncalibrated**:
their compiler stack (XLA, Neuron, SynapseAI, Vitis AI, TensorRT on JetPack) shares nothing
with the measured device's, so its efficiency does not carry over. Their rows use the
kind's documented prior instead (``bench.hardware.catalog.Prior``: the median of published
results of that kind as a fraction of the peak they ran at, e.g. MLPerf SDXL on TPU v5e),
with a band from the published spread widened ``UNCALIBRATED_SPREAD`` times either way
(published results are tuned, large-batch runs of large models; a run's model at its batch
sizes may reach much less, or on a stack that fuses it better, more), capped at the roof.
Such rows say ``uncalibrated`` (``calibration`` column, ``reason``). A kind whose stack runs
fp32 matmuls in another precision (XLA and Neuron: bf16) bounds fp32 pipelines by that peak.
A precision the vendor publishes no peak for is a ``no-figure`` row, not a guess.

Edge targets: on a device that shares its memory with the CPU, the fit is against what the
OS and runtime leave (``os_reserve``; without one, the fit is an upper bound and the reason
says so); a target ``KEY@MODE`` (a Jetson power mode) uses the mode's figures and its power
for items per joule, not the module's maximum.

The generate and sample workloads (bench.analysis.roofline, ``phase_work``) go through
the same four steps, each phase as its own row (``phase``), with its own item and bound:

- a generate cell is two rows. ``decode``: the item is one new token of one sequence
  (2 x params FLOPs), a step reads the measured ``decode_gb_s x tpot_ms / 1e3`` GB
  (weights + KV cache), so at the batches served it is bandwidth-bound and its
  efficiency is the measured decode GB/s over the source's bandwidth (the run's
  ``pct_of_bandwidth`` / 100 when the source is the peak measured there, which it is
  calibrated against). The projected decode then runs at efficiency x the target's
  bandwidth: ``latency_ms`` is the projected TPOT, ``throughput_items_s`` the tokens/s
  of the batch while decoding (batch / TPOT). ``prefill``: the item is one prompt
  token (2 x params FLOPs, the weights read once per prompt): compute-bound beyond
  the ridge, ``latency_ms`` the projected TTFT, items/s the prefill tokens/s. Both
  need the weights and the KV cache in memory. At another batch the weights are
  read once per step as before and the KV cache per sequence;
- a sample cell is one row, one image of a whole sampling run (its recorded FLOPs):
  no bytes are traced for it, so the compute roof alone bounds it, calibrated as
  forward cells are.

``bound`` says which roof and which phase: "memory (decode)", "compute (prefill)",
"compute (forward)", "compute (sample)". Rows of one model, pipeline and phase
calibrate each other only with the same workload settings (prompt, new tokens,
KV cache; steps, guidance, sampler): ``settings`` names them.

Cost columns: items/s per 1000 USD of purchase price, USD per million items at
the cloud price per hour, items per joule at TDP or the power mode's power (a device
drawing less does better, so it is a lower bound on energy efficiency). A figure the
catalogue marks missing leaves its column empty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.analysis.matching import settings_text, workload_of
from bench.analysis.roofline import (
    GIB,
    PhaseWork,
    max_batch,
    memory_needed,
    peak_precision,
    phase_work,
    phases_of,
    roofline,
)
from bench.analysis.source import Source
from bench.core.precision import compute_precision, peak_key
from bench.hardware.catalog import DeviceSpec

if TYPE_CHECKING:
    import pandas as pd

#: below this fraction of the roofline bound, a measured cell is limited by per-call overhead (Python,
#: dispatch, thread wake-ups), which the roofline does not model: its rows are flagged as unreliable
OVERHEAD_BOUND_EFFICIENCY = 0.01

#: relative float round-off a measured value may sit outside the band and still be in it (add_check)
BAND_ROUNDING = 1e-9

#: an uncalibrated row's band: the kind's published spread, widened this many times either way (module doc)
UNCALIBRATED_SPREAD = 2.0

#: columns of projection.csv, units in the names (tidy: one row per model x pipeline x target x batch)
PROJECTION_COLUMNS: tuple[str, ...] = (
    "source_run", "source_device_name", "source_peak", "model", "size", "family", "item", "workload", "phase",
    "settings", "pipeline", "precision", "target", "target_name", "target_kind", "target_precision", "batch_size",
    "status", "reason", "calibration",
    "calibrated_from", "gflops_per_item", "mb_moved_per_item", "arithmetic_intensity_flop_per_byte",
    "ridge_flop_per_byte", "bound", "target_peak_tflops", "target_bandwidth_gb_s", "roofline_items_s",
    "efficiency", "efficiency_lo", "efficiency_hi", "throughput_items_s", "throughput_items_s_lo",
    "throughput_items_s_hi", "latency_ms", "latency_ms_lo", "latency_ms_hi", "mem_needed_gib",
    "target_mem_gib", "target_usable_mem_gib", "fits", "max_batch", "items_s_per_kusd", "usd_per_million_items",
    "power_w", "items_per_joule", "measured_items_s", "error_pct", "in_band",
)  # fmt: skip


# ----------------------------------------------------------------- calibration
def efficiencies(cells: pd.DataFrame, source: DeviceSpec, fp32_as: str = "tf32") -> pd.DataFrame:
    """One row per ok cell and phase: its measured items/s over the source device's roofline bound, its traffic.

    A forward or sample cell is one phase, a generate cell two (prefill, decode: module
    docstring). Cells whose precision the source has no peak for, or that record no work
    or bytes, get NaN efficiency (they cannot calibrate anything) and say why in ``reason``.
    """
    import pandas as pd

    rows = []
    ok = cells[(cells["status"] == "ok") & cells["throughput_items_s"].notna()]
    for _, cell in ok.iterrows():
        precision = str(cell["precision"]) if not pd.isna(cell["precision"]) else "fp32"
        pipeline = str(cell["pipeline"])
        key, why = peak_precision(precision, source, fp32_as, pipeline)
        for phase in phases_of(cell):
            work = phase_work(cell, phase)
            efficiency, reason = math.nan, ""
            if isinstance(work, str):
                reason = work
            elif key is None:
                reason = why
            else:
                peak_flops = source.peak_flops(key)
                assert peak_flops is not None
                bound = roofline(
                    work.flops_per_item,
                    work.traffic.bytes_per_item(int(cell["batch_size"])),
                    peak_flops,
                    source.bandwidth_bytes_s,
                )
                efficiency = work.measured_items_s / bound.items_s
            rows.append(
                {
                    "model": cell["model"],
                    "size": cell["size"],
                    "family": cell["family"],
                    "item": cell["item"],
                    "workload": workload_of(cell),
                    "phase": phase,
                    "settings": settings_text(cell),
                    "pipeline": pipeline,
                    "precision": precision,
                    "batch_size": int(cell["batch_size"]),
                    "gflops_per_item": work.flops_per_item / 1e9 if not isinstance(work, str) else math.nan,
                    "throughput_items_s": work.measured_items_s if not isinstance(work, str) else math.nan,
                    "efficiency": efficiency,
                    "reason": reason,
                    "work": work,
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
    source: Source,
    targets: list[DeviceSpec],
    batch_sizes: tuple[int, ...] | None = None,
    fp32_as: str = "tf32",
    holdout: bool = False,
    source_run: str = "",
) -> pd.DataFrame:
    """The projection table: one row per (target, model, size, pipeline, phase, batch size).

    ``batch_sizes`` defaults to those measured in the run. ``holdout`` calibrates
    each row without the cells measured at its own batch size, so a check against
    measured cells shows predictive error rather than a round trip. Uncalibrated
    targets (module doc) take their kind's prior instead of the measured efficiency.
    """
    import pandas as pd

    eff = efficiencies(cells, source.spec, fp32_as)
    if eff.empty:
        raise ValueError("the run has no ok cells to calibrate from")
    device_names = cells["device_name"].dropna().unique()
    device_name = str(device_names[0]) if len(device_names) else ""
    wanted = tuple(sorted(set(batch_sizes))) if batch_sizes else tuple(sorted(eff["batch_size"].unique()))
    rows: list[dict[str, Any]] = []
    for target in targets:
        for _key, group in eff.groupby(["model", "size", "pipeline", "phase", "settings"], sort=False):
            first = group.iloc[0]
            precision = str(first["precision"])
            work = first["work"]
            key, status, why, runs_as = _target_peak(precision, str(first["pipeline"]), target, fp32_as)
            calibrating, band_cells, note = _calibration_cells(
                eff, group, precision, source.spec, target, fp32_as
            )
            for batch in wanted:
                row = _base_row(source_run, device_name, source, target, first, batch)
                rows.append(row)
                if not isinstance(work, PhaseWork):
                    row.update(status="no-profile", reason=work)
                    continue
                if key is None:
                    row.update(status=status, reason=why)
                    continue
                usable = calibrating[calibrating["batch_size"] != batch] if holdout else calibrating
                band = band_cells[band_cells["batch_size"] != batch] if holdout else band_cells
                near = _nearest(usable["batch_size"], batch)
                if near is None and target.calibrated:
                    reasons = [r for r in group["reason"] if r]
                    why_not = reasons[0] if reasons else "no other batch size measured (holdout)"
                    row.update(status="no-calibration", reason=why_not)
                    continue
                central = usable[usable["batch_size"] == near].iloc[0] if near is not None else None
                if target.calibrated:
                    assert central is not None
                    calibration = _measured(central, band, note)
                else:
                    calibration = _prior(target, central)
                notes = [n for n in (runs_as, calibration.note) if n]
                _fill(row, work, target, key, batch, calibration, "; ".join(notes))
    return pd.DataFrame(rows, columns=list(PROJECTION_COLUMNS))


def _target_peak(
    precision: str, pipeline: str, target: DeviceSpec, fp32_as: str
) -> tuple[str | None, str, str, str]:
    """The target's peak key for a pipeline: (key, "", "", note) or (None, status, reason, "").

    A kind whose stack runs fp32 matmuls in another precision (``fp32_runs_as``) bounds an
    fp32 pipeline by that peak, and the note says so. A peak the vendor gives no figure
    for is ``no-figure``; one the hardware lacks, ``unsupported``.
    """
    kind = target.kind_info
    computes = compute_precision(precision, pipeline) or precision
    note = ""
    if kind is not None and kind.fp32_runs_as and computes in ("fp32", "tf32"):
        source = kind.fp32_runs_as_source.replace("; ", ", ")  # "; " separates a row's notes
        note = f"fp32 runs as {kind.fp32_runs_as} on {target.kind} ({source})"
        precision, pipeline = kind.fp32_runs_as, ""
    key, why = peak_precision(precision, target, fp32_as, pipeline)
    if key is not None:
        return key, "", "", note
    wanted = peak_key(
        precision, has_tf32=target.peak.get("tf32") is not None, fp32_as=fp32_as, pipeline=pipeline
    )
    missing = target.missing.get(f"peak.{wanted}") if wanted else None
    if missing is not None:
        return None, "no-figure", f"{target.label} has no published {wanted} peak ({missing})", ""
    return None, "unsupported", why, ""


@dataclass(frozen=True)
class Calibration:
    """The efficiency a row applies to the target's roofline, its band, and where they come from."""

    efficiency: float
    lo: float
    hi: float
    calibrated_from: str
    gflops_per_item: float | None  # the central cell's FLOPs per item; None: the phase's own
    calibration: str  # "measured" or "uncalibrated"
    note: str = ""


def _measured(central: Any, band_cells: pd.DataFrame, note: str) -> Calibration:
    """The measured device's efficiency: the nearest batch's cell, banded by the precision family's cells."""
    efficiency = float(central["efficiency"])
    notes = [note] if note else []
    if efficiency < OVERHEAD_BOUND_EFFICIENCY:
        notes.append(
            f"efficiency {efficiency:.1e} on the measured device: per-call overhead, not the roofline, "
            "limits it there, so this projection is unreliable"
        )
    return Calibration(
        efficiency=efficiency,
        lo=min(float(band_cells["efficiency"].min()), efficiency),
        hi=max(float(band_cells["efficiency"].max()), efficiency),
        calibrated_from=f"{central['pipeline']}@{int(central['batch_size'])}",
        gflops_per_item=float(central["gflops_per_item"]),
        calibration="measured",
        note="; ".join(notes),
    )


def _prior(target: DeviceSpec, central: Any) -> Calibration:
    """An uncalibrated target's efficiency: its kind's prior, banded as the module doc says."""
    kind = target.kind_info
    assert kind is not None and kind.prior is not None  # the catalogue insists on a prior for such kinds
    prior = kind.prior
    lo, hi = prior.lo / UNCALIBRATED_SPREAD, min(1.0, prior.hi * UNCALIBRATED_SPREAD)
    stack = kind.stack.replace("; ", ", ")  # "; " separates a row's notes
    note = (
        f"uncalibrated: genbench cannot measure on {target.kind} ({stack}), so the measured device's "
        f"efficiency does not carry over; the {target.kind} prior {prior.value:.3g} is the median of "
        f"{len(prior.points)} published result(s) ({prior.lo:.3g}..{prior.hi:.3g} of peak, "
        "`bench devices --sources` lists them), banded x"
        f"{UNCALIBRATED_SPREAD:g} either way"
    )
    return Calibration(
        efficiency=prior.value,
        lo=lo,
        hi=hi,
        calibrated_from=f"prior:{target.kind}",
        gflops_per_item=None if central is None else float(central["gflops_per_item"]),
        calibration="uncalibrated",
        note=note,
    )


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
    first = group.iloc[0]
    same_model = eff[
        (eff["model"] == first["model"])
        & (eff["size"] == first["size"])
        & (eff["phase"] == first["phase"])
        & (eff["settings"] == first["settings"])
        & eff["efficiency"].notna()
    ]
    own = group[group["efficiency"].notna()]
    family = same_model[same_model["precision"] == precision]
    computes = compute_precision(precision, str(first["pipeline"])) or precision
    if not (emulated(source, computes) and not emulated(target, computes)):
        return own, family, ""
    fp32_family = same_model[same_model["precision"] == "fp32"]
    baseline = fp32_family[fp32_family["pipeline"] == "fp32"]
    central = baseline if not baseline.empty else fp32_family
    src_rate, src_fp32 = source.peak_flops(computes), source.peak_flops("fp32")
    note = (
        f"{computes} is emulated on the measured device ({(src_rate or 0) / 1e9:.3g} vs fp32 "
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
        "workload": first["workload"],
        "phase": first["phase"],
        "settings": first["settings"],
        "pipeline": first["pipeline"],
        "precision": first["precision"],
        "target": target.label,
        "target_name": target.name,
        "target_kind": target.kind,
        "batch_size": batch,
        "status": "ok",
        "reason": "",
        "calibration": "measured" if target.calibrated else "uncalibrated",
        "target_mem_gib": target.memory_bytes / GIB,
        "target_usable_mem_gib": target.usable_memory_bytes / GIB,
        "target_bandwidth_gb_s": target.bandwidth_bytes_s / 1e9,
        "power_w": None if target.tdp is None else target.tdp.value,
    }


def _memory_note(target: DeviceSpec) -> str:
    """What a fit on a device that shares its memory with the CPU is against."""
    if not target.shared_memory:
        return ""
    total = target.memory_bytes / GIB
    if target.os_reserve is None:
        return (
            f"shared memory: the fit is against all {total:.3g} GiB, which the OS and runtime share "
            "(the catalogue gives no os_reserve for it: measure yours, add it with --catalog), so an upper bound"
        )
    return (
        f"shared memory: {target.usable_memory_bytes / GIB:.3g} of {total:.3g} GiB left after the OS and "
        f"runtime's {target.os_reserve.value / GIB:.3g} GiB ({target.os_reserve.source.replace('; ', ', ')})"
    )


def _fill(
    row: dict[str, Any],
    work: PhaseWork,
    target: DeviceSpec,
    key: str,
    batch: int,
    calibration: Calibration,
    note: str = "",
) -> None:
    """Project one row: efficiency x the target's roofline bound at ``batch``; one call's time from it.

    One call of the phase makes ``batch x items_per_sequence`` items (a prefill: the prompt's
    tokens of every sequence), so ``latency_ms`` is that over items/s: a forward call, a
    sampling run, TTFT or TPOT.
    """
    traffic = work.traffic
    peak_flops = target.peak_flops(key)
    assert peak_flops is not None
    gflops = calibration.gflops_per_item
    flops = gflops * 1e9 if gflops is not None else work.flops_per_item
    moved = traffic.bytes_per_item(batch)
    bound = roofline(flops, moved, peak_flops, target.bandwidth_bytes_s)
    efficiency, lo, hi = calibration.efficiency, calibration.lo, calibration.hi
    items, items_lo, items_hi = (e * bound.items_s for e in (efficiency, lo, hi))
    needed = memory_needed(traffic, batch, target.kind)
    usable = target.usable_memory_bytes
    # without traced activations (a sampling run) only the weights are known: no largest batch to give
    largest: int | None = max_batch(traffic, usable, target.kind) if work.traced_bytes else None
    fits = batch <= largest if largest is not None else needed <= usable
    power = (
        ""
        if target.mode is None or target.tdp is None
        else f"items/J at the {target.mode} mode's {target.tdp.value:g} W"
    )
    prior_on_memory = ""
    if calibration.calibration == "uncalibrated" and bound.bound == "memory":
        prior_on_memory = (
            "memory-bound here, while the prior comes from compute-bound published runs, and genbench's traced "
            "traffic is an upper bound: this row is on the pessimistic side"
        )
    notes = [n for n in (note, prior_on_memory, work.note, _memory_note(target), power) if n]
    row["reason"] = "; ".join(notes)
    row.update(
        target_precision=key,
        calibrated_from=calibration.calibrated_from,
        gflops_per_item=flops / 1e9,
        mb_moved_per_item=moved / 1e6 if work.traced_bytes else math.nan,
        arithmetic_intensity_flop_per_byte=bound.intensity if work.traced_bytes else math.nan,
        ridge_flop_per_byte=bound.ridge,
        bound=f"{bound.bound} ({work.phase})",
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
        of = "usable " if target.shared_memory and target.os_reserve is not None else ""
        row.update(
            status="does-not-fit",
            reason="; ".join(
                [
                    f"needs {needed / GIB:.1f} GiB of {usable / GIB:.1f} GiB {of}".rstrip()
                    + (f"; largest batch {largest}" if largest is not None else ""),
                    *notes,
                ]
            ),
        )
        return
    per_call = batch * work.items_per_sequence
    row.update(
        throughput_items_s=items,
        throughput_items_s_lo=items_lo,
        throughput_items_s_hi=items_hi,
        latency_ms=per_call / items * 1e3,
        latency_ms_lo=per_call / items_hi * 1e3,
        latency_ms_hi=per_call / items_lo * 1e3,
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
    model, size, pipeline, batch size, phase and workload settings, ok cells only. A
    generate cell's measured items/s are its phase's: batch / TPOT for decode, the
    prefill tokens/s for prefill.
    """
    import pandas as pd

    frame = projection.copy()
    ok = measured[(measured["status"] == "ok") & measured["throughput_items_s"].notna()]
    lookup: dict[tuple[Any, ...], float] = {}
    for _, r in ok.iterrows():
        for phase in phases_of(r):
            work = phase_work(r, phase)
            if isinstance(work, PhaseWork):
                key = (r["model"], r["size"], r["pipeline"], int(r["batch_size"]), phase, settings_text(r))
                lookup[key] = work.measured_items_s
    measured_col, error_col, band_col = [], [], []
    for row in frame.itertuples(index=False):
        settings = row.settings if isinstance(row.settings, str) else ""
        value = lookup.get((row.model, row.size, row.pipeline, int(row.batch_size), row.phase, settings))
        projected = row.throughput_items_s
        if row.target != target_label or value is None or _isnan(projected):
            measured_col.append(value if row.target == target_label else math.nan)
            error_col.append(math.nan)
            band_col.append(pd.NA)
            continue
        measured_col.append(value)
        error_col.append((float(projected) / value - 1.0) * 100.0)
        # the band's ends are products of the measured value's own efficiency: float round-off is inside
        lo, hi = (
            row.throughput_items_s_lo * (1 - BAND_ROUNDING),
            row.throughput_items_s_hi * (1 + BAND_ROUNDING),
        )
        band_col.append(bool(lo <= value <= hi))
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
