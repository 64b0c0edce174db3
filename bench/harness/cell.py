"""One cell, measured: build the pipeline -> load the runtime -> time it -> observe it -> typed parts.

The order is what makes the numbers mean what the table says:
1. build: the passes run on a device copy of the fp32 model, timed (``build_s``);
2. load: the device peak is reset once the build's intermediates are freed, so the
   peak is what running the optimized model needs; the first call is timed apart
   (``first_call_ms``: lazy init, autotuning);
3. time: adaptive sampling with the device's clock (CUDA events on a GPU); NVML is
   read at the edges of the timed region; transfers and energy are measured after
   it, in windows of their own;
4. observe: fidelity against the reference output, work counted on the pipeline's
   last eager torch model (so a pruned model's FLOPs and bytes are its own).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.artifact import Artifact, TorchArtifact, present_inputs
from bench.core.device import Device, synchronize
from bench.core.text import one_line
from bench.hardware.peak import PeakResult, peak_note
from bench.harness.config import ServingSettings, WorkloadSettings
from bench.harness.plan import Cell
from bench.harness.reference import Reference, References
from bench.harness.result import BuildResult, CellIdentity, CellOutcome, CellResult, Throughput
from bench.measure.clocks import HostTimer, Timer
from bench.measure.contention import ContentionMeter, HostContention, gpu_process_reader
from bench.measure.fidelity import compare_outputs
from bench.measure.gpu_watch import GpuWatch
from bench.measure.memory import (
    Footprint,
    PeakRSS,
    release_device_cache,
    reset_device_peak,
)
from bench.measure.nvml import Nvml
from bench.measure.sampling import Sampled, SamplingPolicy, sample_adaptively
from bench.measure.stats import summarize
from bench.measure.transfers import Transfers, measure_transfers
from bench.measure.work import WorkPerItem, count_flops, measure_work
from bench.runtimes import LoadedModel, load, runtime_notes
from optimizers.registry import PassContext


@dataclass(frozen=True)
class CellSettings:
    """What the run's configuration decides for every cell."""

    policy: SamplingPolicy
    min_psnr_db: float
    include_transfers: bool
    batch_sizes: tuple[int, ...]
    #: processes of this run besides the measuring one (the runner of a worker): not "other" users of the GPU
    run_pids: tuple[int, ...] = ()
    #: what the generate and sample workloads run (None: forward cells only, as in tests built by hand)
    workload: WorkloadSettings | None = None
    #: the serving scenario's settings (None: single-stream cells, as in tests built by hand)
    serving: ServingSettings | None = None


@dataclass(frozen=True)
class Instruments:
    """The device and what measures on it, made once per run."""

    device: Device
    timer: Timer
    nvml: Nvml | None
    peak: PeakResult | None

    def synchronize(self) -> None:
        synchronize(self.device)


def measure_cell(
    cell: Cell,
    identity: CellIdentity,
    references: References,
    tools: Instruments,
    settings: CellSettings,
    workdir: Path,
) -> CellResult:
    """The cell's result with every measured part; an exception for a cell that failed (the executor maps it)."""
    ref = references.get(cell)
    device = tools.device
    with PeakRSS() as rss:
        scenario = settings.serving.scenario if settings.serving is not None else "single-stream"
        built = build_forward(cell, ref, references, tools, settings.batch_sizes, workdir, scenario)
        artifact, runtime, work = built.artifact, built.runtime, built.work
        prepared = runtime.prepare(ref.inputs)
        first_output: list[Any] = []
        first_call_ms = HostTimer(synchronize=tools.synchronize).measure(
            lambda: first_output.append(runtime.run(prepared))
        )
        # Converted before any further call: CUDA-graph replays (cudagraph, compile:reduce-overhead)
        # write into the same output buffer.
        output = runtime.to_torch(first_output.pop())
        transfers = _transfers(runtime, ref, prepared, tools, settings.include_transfers)
        timed = _timed_call(runtime, ref, prepared, transfers.included)
        region = sample_watched(lambda: tools.timer.measure(timed), tools, settings)
        sampled, contention, watch = region.sampled, region.contention, region.watch
        energy = watch.measure_energy(timed, cell.batch_size)
    latency = summarize(sampled.latencies_ms)
    throughput = Throughput.of(
        cell.batch_size, latency.p50, work.gflops_per_item, artifact.precision, tools.peak
    )
    through_torch = runtime.allocates_through_torch  # else its memory is nvml_process_mem_mb's
    notes = [
        *artifact.notes,
        *runtime_notes(runtime),
        f"stop={sampled.stop_reason}",
        *([built.work_note] if built.work_note else []),
    ]
    if energy is not None:
        notes.append(energy.note())
    if contention.contended:
        notes.append(f"contended: {contention.describe()}")
    above = peak_note(
        tools.peak, throughput.pct_of_peak, throughput.peak_dtype(artifact.precision, tools.peak)
    )
    if above is not None:
        notes.append(above)
    return CellResult(
        identity=identity,
        outcome=CellOutcome("ok", notes="; ".join(notes)),
        build=BuildResult(
            runtime.runtime_name,
            artifact.precision,
            built.build_s,
            first_call_ms,
            built.params,
            built.model_bytes,
        ),
        latency=latency,
        contention=contention,
        throughput=throughput,
        transfers=transfers,
        footprint=Footprint.of(rss, device, through_torch),
        work=work,
        fidelity=compare_outputs(ref.output, output, settings.min_psnr_db),
        gpu=watch.observation(),
        energy=energy,
        samples_ms=tuple(sampled.latencies_ms),
    )


@dataclass(frozen=True)
class BuiltForward:
    """A forward pipeline built and loaded: what its row says of the build, and the runtime to call."""

    artifact: Artifact
    runtime: LoadedModel
    build_s: float
    work: WorkPerItem
    work_note: str | None
    params: int
    model_bytes: int | None


def build_forward(
    cell: Cell,
    ref: Reference,
    references: References,
    tools: Instruments,
    batch_sizes: tuple[int, ...],
    workdir: Path,
    scenario: str = "single-stream",
) -> BuiltForward:
    """Build the cell's pipeline on a device copy of the fp32 model (timed), count its work, and load it.

    The device peak is reset between build and load: from there on it is what running the
    optimized model needs (its weights, activations and workspace), not the build's
    intermediate copies (nor the torch model an exported pipeline started from). A forward
    cell and a server cell build alike; ``scenario`` reaches the passes (OpenVINO's hint follows it).
    """
    device = tools.device
    ctx = PassContext(
        device=device,
        example_inputs=ref.inputs,
        calibration=references.calibration(cell),
        workdir=workdir,
        batch_sizes=batch_sizes,
        cache_key=f"{cell.spec.name}-{cell.size}-{cell.pipeline.text}",
        scenario=scenario,
    )
    t0 = time.perf_counter()
    artifact, last_eager = apply_pipeline(cell, TorchArtifact(module=references.device_copy(ref.module)), ctx)
    tools.synchronize()
    build_s = time.perf_counter() - t0
    work, work_note = count_work(cell, last_eager, artifact.precision, ref.inputs, device.torch_name)
    params = sum(p.numel() for p in last_eager.module.parameters())
    model_bytes = stored_bytes_of(artifact)
    del last_eager
    release_device_cache(device)
    reset_device_peak(device)
    runtime = load(artifact, device)
    return BuiltForward(artifact, runtime, build_s, work, work_note, params, model_bytes)


@dataclass(frozen=True)
class TimedRegion:
    """What sampling a cell gave: the raw samples, the host's contention over them, the GPU's watch."""

    sampled: Sampled
    contention: HostContention
    watch: GpuWatch


def sample_watched(
    measure_once: Callable[[], float],
    tools: Instruments,
    settings: CellSettings,
    on_timed_start: Callable[[], None] = lambda: None,
) -> TimedRegion:
    """Adaptive sampling of ``measure_once``, with NVML read and contention metered over the timed samples
    alone (warm-up excluded): the one timed region every workload's cell goes through.

    ``on_timed_start`` runs between warm-up and the first timed sample (a workload starts keeping
    its step times there).
    """
    watch = GpuWatch(tools.nvml, tools.synchronize)
    meter = ContentionMeter(
        torch.get_num_threads(),
        gpu_processes=gpu_process_reader(tools.nvml) if tools.nvml is not None else None,
        own_pids=settings.run_pids,
    )

    def timed_start() -> None:
        on_timed_start()
        watch.timed_start()
        meter.start()

    sampled = sample_adaptively(measure_once, settings.policy, on_timed_start=timed_start)
    contention = meter.stop()
    watch.timed_end()
    return TimedRegion(sampled, contention, watch)


def apply_pipeline(cell: Cell, start: TorchArtifact, ctx: PassContext) -> tuple[Artifact, TorchArtifact]:
    """The pipeline's passes applied in order: the final artifact, and the last eager torch model on the way.

    The last eager model is what work is counted on (a pruned model's FLOPs are its own,
    a compiled one's are its eager model's).
    """
    artifact: Artifact = start
    last_eager = start
    for step in cell.pipeline.passes:
        artifact = step.apply(artifact, ctx)
        if isinstance(artifact, TorchArtifact) and not artifact.compiled:
            last_eager = artifact
    return artifact, last_eager


def count_work(
    cell: Cell, eager: TorchArtifact, precision: str, ref_inputs: tuple[torch.Tensor, ...], device: str
) -> tuple[WorkPerItem, str | None]:
    """FLOPs and bytes of the last eager torch model of the pipeline, at the cell's batch and precision.

    A model that cannot be traced leaves the work columns empty (and says why in the notes):
    its latency is still measured, so the cell is still ``ok``.
    """

    def inputs_at(batch: int) -> tuple[torch.Tensor, ...]:
        inputs = cell.spec.example_inputs(batch, cell.size, 0)
        return present_inputs(inputs, "cpu", eager.input_dtype, False)

    try:
        return measure_work(eager.module, inputs_at).at(cell.batch_size, precision), None
    except Exception as exc:  # neither meta nor its device can trace it at batch 1 and 2 (2:4 weights, say)
        why = one_line(exc, 160)
    nan = math.nan
    try:  # FLOPs at the cell's own batch at least, as a model that only runs at that batch allows
        flops = count_flops(
            eager.module, present_inputs(ref_inputs, device, eager.input_dtype, eager.channels_last)
        )
    except Exception:
        return WorkPerItem(nan, nan, nan, nan, nan), f"work not counted ({why})"
    gflops = flops / cell.batch_size / 1e9
    return WorkPerItem(gflops, nan, nan, nan, nan), f"bytes moved not counted ({why})"


def stored_bytes_of(artifact: Any) -> int | None:
    """The artifact's size as stored; empty for a third-party artifact that does not say (``stored_bytes``)."""
    stored = getattr(artifact, "stored_bytes", None)
    return stored() if callable(stored) else None


def _transfers(
    runtime: LoadedModel, ref: Reference, prepared: Any, tools: Instruments, include: bool
) -> Transfers:
    """On a GPU, H2D and D2H copy times measured apart; on CPU nothing is copied (NaN)."""
    if not tools.device.is_cuda:
        return Transfers()
    output = runtime.run(prepared)
    tools.synchronize()
    return measure_transfers(
        lambda: runtime.prepare(ref.inputs), lambda: runtime.to_torch(output), tools.synchronize, include
    )


def _timed_call(runtime: LoadedModel, ref: Reference, prepared: Any, with_copies: bool) -> Callable[[], Any]:
    if with_copies:  # --include-transfers: every timed call places its inputs and fetches its output
        return lambda: runtime.to_torch(runtime.run(runtime.prepare(ref.inputs)))
    return lambda: runtime.run(prepared)
