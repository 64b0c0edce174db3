"""The matrix loop: build model -> apply pipeline -> load runtime -> measure -> one row.

Every cell ends as a row, whatever happens inside it: a pass that does not apply
is ``skipped``, an exception is ``error`` with its one-line reason, running out
of device memory is ``oom``. Only Ctrl-C stops the run, and rows already written
stay on disk.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import gc
import math
import shutil
import socket
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.artifact import Artifact, TorchArtifact, present_inputs
from bench.core.device import Device, device_name, synchronize
from bench.core.errors import NotApplicable
from bench.core.text import one_line
from bench.hardware.peak import PeakResult, read_cached
from bench.harness.config import RunConfig
from bench.harness.plan import skip_reason
from bench.measure.energy import EnergyMeter, EnergyReading
from bench.measure.environment import git_sha
from bench.measure.fidelity import compare_outputs
from bench.measure.memory import (
    PeakRSS,
    device_peak_mb,
    device_peak_reserved_mb,
    module_size,
    reset_device_peak,
)
from bench.measure.nvml import GpuState, Nvml, open_gpu
from bench.measure.timing import HostTimer, SamplingPolicy, sample_adaptively, summarize, timer_for
from bench.measure.work import count_flops
from bench.results.schema import ResultWriter
from bench.runtimes import first_tensor, load
from optimizers.registry import PassContext, Pipeline
from reference_models.spec import ModelSpec

REASON_MAX_CHARS = 400
#: the least time over which a GPU cell's energy is measured (see _GpuWatch)
ENERGY_WINDOW_S = 1.0
TRANSFER_REPEATS = 5


@dataclass(frozen=True)
class Cell:
    cell_id: int
    spec: ModelSpec
    size: str
    pipeline: Pipeline
    batch_size: int


def plan_cells(
    specs: list[ModelSpec], size: str, pipelines: list[Pipeline], batch_sizes: tuple[int, ...]
) -> list[Cell]:
    """Model-major order, so each model is built once and its reference reused across cells."""
    cells: list[Cell] = []
    for spec in specs:
        cell_size = size if size in spec.sizes else spec.sizes[0]
        for batch in batch_sizes:
            for pipeline in pipelines:
                cells.append(Cell(len(cells), spec, cell_size, pipeline, batch))
    return cells


@dataclass
class _Reference:
    """What every cell of one (model, batch) compares against and is normalized by."""

    module: torch.nn.Module
    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor
    flops: int


class Runner:
    """Runs cells in order, writing each row as soon as it is known."""

    def __init__(
        self,
        config: RunConfig,
        device: Device,
        writer: ResultWriter,
        run_id: str,
        on_cell_done: Callable[[dict[str, Any]], None] = lambda row: None,
        on_cell_start: Callable[[Cell], None] = lambda cell: None,
    ) -> None:
        self.config = config
        self.device = device
        self.writer = writer
        self.run_id = run_id
        self.on_cell_done = on_cell_done
        self.on_cell_start = on_cell_start
        self.policy = SamplingPolicy(
            min_samples=config.min_samples, time_budget_s=config.time_budget_s, warmup_s=config.warmup_s
        )
        if device.is_cuda:
            torch.cuda.set_device(device.torch_name)  # events, streams and graphs use the current device
        self.timer = timer_for(device)
        self.host = socket.gethostname()
        self.device_name = device_name(device)
        self._references: dict[tuple[str, str, int], _Reference] = {}
        self._modules: dict[tuple[str, str], torch.nn.Module] = {}
        self._nvml = open_gpu(device.index or 0) if device.is_cuda else None
        self.peak = usable_peak(device, self.device_name)

    # ----------------------------------------------------------------- references
    def _base_module(self, spec: ModelSpec, size: str) -> torch.nn.Module:
        """The fp32 model as built, kept on the CPU between cells.

        On a GPU each cell gets its own device copy (``_device_copy``), so one cell's
        device-memory peak holds that cell's model and nothing left from another.
        """
        key = (spec.name, size)
        if key not in self._modules:
            self._modules.clear()  # one model resident at a time: cells are model-major
            self._references.clear()
            self._modules[key] = spec.build(size)
        return self._modules[key]

    def _device_copy(self, module: torch.nn.Module) -> torch.nn.Module:
        return module if not self.device.is_cuda else copy.deepcopy(module).to(self.device.torch_name)

    def _reference(self, cell: Cell) -> _Reference:
        key = (cell.spec.name, cell.size, cell.batch_size)
        if key not in self._references:
            module = self._base_module(cell.spec, cell.size)
            on_device = self._device_copy(module)
            inputs = cell.spec.example_inputs(cell.batch_size, cell.size, self.config.seed)
            placed = present_inputs(inputs, self.device.torch_name, torch.float32, False)
            with _strict_fp32(self.device), torch.inference_mode():
                output = first_tensor(on_device(*placed)).detach().float().cpu()
            flops = count_flops(on_device, placed)
            del on_device
            self._references[key] = _Reference(module, inputs, output, flops)
        return self._references[key]

    def _calibration(self, cell: Cell) -> Callable[[int], Iterator[tuple[torch.Tensor, ...]]]:
        def batches(n: int) -> Iterator[tuple[torch.Tensor, ...]]:
            for i in range(n):  # seeds disjoint from the timed inputs' seed
                yield cell.spec.example_inputs(cell.batch_size, cell.size, self.config.seed + 1000 + i)

        return batches

    # ----------------------------------------------------------------- cells
    def run(self, cells: list[Cell]) -> None:
        for cell in cells:
            self.on_cell_start(cell)
            row, samples = self.run_cell(cell)
            self.writer.add(row, samples)
            self.on_cell_done(row)

    def _base_row(self, cell: Cell) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "cell_id": cell.cell_id,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "host": self.host,
            "device": str(self.device),
            "device_name": self.device_name,
            "model": cell.spec.name,
            "size": cell.size,
            "family": cell.spec.family,
            "pipeline": cell.pipeline.text,
            "batch_size": cell.batch_size,
            "item": cell.spec.item,
            "torch_version": torch.__version__,
            "git_sha": git_sha(),
        }

    def run_cell(self, cell: Cell) -> tuple[dict[str, Any], list[float]]:
        row = self._base_row(cell)
        reason = skip_reason(cell.pipeline, self.device)
        if reason is not None:
            row.update(status="skipped", reason=reason[:REASON_MAX_CHARS])
            return row, []
        workdir = self._workdir(cell)
        samples: list[float] = []
        try:
            samples = self._measure(cell, row, workdir)
            row["status"] = "ok"
        except (KeyboardInterrupt, SystemExit):
            raise
        except NotApplicable as exc:  # worded like applies_to's reasons: no exception class in front
            row.update(status="skipped", reason=one_line(exc, REASON_MAX_CHARS, with_type=False))
        except Exception as exc:
            status = "oom" if is_out_of_memory(exc) else "error"
            row.update(status=status, reason=one_line(exc, REASON_MAX_CHARS))
            if status == "error":
                row["notes"] = _where(exc)
        finally:
            if not self.config.keep_artifacts:
                shutil.rmtree(workdir, ignore_errors=True)
        if any(step.name == "compile" for step in cell.pipeline.passes):
            torch.compiler.reset()  # drops compiled code and CUDA-graph pools, which outlive the module
        if row["status"] == "oom":
            # Only here, out of the except block, are the failed cell's frames (and the
            # tensors they hold through the traceback) gone, so the memory can really be freed.
            gc.collect()
            _release_device_cache(self.device)
        return row, samples

    def _transfer_times(
        self, runtime: Any, inputs: tuple[torch.Tensor, ...], prepared: Any
    ) -> tuple[float, float]:
        """Median host->device (placing the inputs) and device->host (fetching the output) times on a GPU.

        Measured apart from the forward, as trtexec reports H2D and D2H; NaN on CPU where there is no copy.
        """
        if not self.device.is_cuda:
            return math.nan, math.nan
        timer = HostTimer(synchronize=lambda: synchronize(self.device))
        output = runtime.run(prepared)
        synchronize(self.device)
        h2d = [timer.measure(lambda: runtime.prepare(inputs)) for _ in range(TRANSFER_REPEATS)]
        d2h = [timer.measure(lambda: runtime.to_torch(output)) for _ in range(TRANSFER_REPEATS)]
        return float(statistics.median(h2d)), float(statistics.median(d2h))

    def _workdir(self, cell: Cell) -> Path:
        if self.config.keep_artifacts:
            path = self.writer.out_dir / "artifacts" / f"cell{cell.cell_id:04d}"
            path.mkdir(parents=True, exist_ok=True)
            return path
        return Path(tempfile.mkdtemp(prefix=f"genbench-cell{cell.cell_id}-"))

    def _measure(self, cell: Cell, row: dict[str, Any], workdir: Path) -> list[float]:
        ref = self._reference(cell)
        ctx = PassContext(
            device=self.device,
            example_inputs=ref.inputs,
            calibration=self._calibration(cell),
            workdir=workdir,
            batch_sizes=self.config.batch_sizes,
            cache_key=f"{cell.spec.name}-{cell.size}-{cell.pipeline.text}",
        )
        flops = ref.flops
        last_torch: TorchArtifact | None = None
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            artifact: Artifact = TorchArtifact(module=self._device_copy(ref.module))
            for step in cell.pipeline.passes:
                artifact = step.apply(artifact, ctx)
                if isinstance(artifact, TorchArtifact):
                    last_torch = artifact
                    if step.changes_work:
                        placed = present_inputs(
                            ref.inputs, self.device.torch_name, artifact.input_dtype, False
                        )
                        flops = count_flops(artifact.module, placed)
            synchronize(self.device)
            row["build_s"] = time.perf_counter() - t0
            params, model_bytes = module_size((last_torch or TorchArtifact(module=ref.module)).module)
            if not isinstance(artifact, TorchArtifact):
                model_bytes = _artifact_bytes(artifact) or model_bytes
            # The device peak from here on is what running the optimized model needs:
            # its weights, activations and workspace, not the build's intermediate copies
            # (nor the torch model an exported pipeline started from).
            last_torch = None
            _release_device_cache(self.device)
            reset_device_peak(self.device)
            runtime = load(artifact, self.device)
            prepared = runtime.prepare(ref.inputs)
            first = HostTimer(synchronize=lambda: synchronize(self.device))
            first_output: list[Any] = []
            row["first_call_ms"] = first.measure(lambda: first_output.append(runtime.run(prepared)))
            # Converted before any further call: CUDA-graph replays (cudagraph, compile:reduce-overhead)
            # write into the same output buffer.
            output = runtime.to_torch(first_output.pop())
            transfers = self._transfer_times(runtime, ref.inputs, prepared)
            if self.config.include_transfers and self.device.is_cuda:
                timed = lambda: runtime.to_torch(runtime.run(runtime.prepare(ref.inputs)))  # noqa: E731
            else:
                timed = lambda: runtime.run(prepared)  # noqa: E731
            gpu = _GpuWatch(self._nvml, self.device)
            sampled = sample_adaptively(
                lambda: self.timer.measure(timed), self.policy, on_timed_start=gpu.timed_start
            )
            gpu.timed_end()
            energy = gpu.measure_energy(timed)

        stats = summarize(sampled.latencies_ms)
        fidelity = compare_outputs(ref.output, output)
        throughput = cell.batch_size / (stats.p50 / 1e3)
        gflops_per_item = flops / cell.batch_size / 1e9
        notes = [*artifact.notes, f"stop={sampled.stop_reason}"]
        if energy is not None:
            notes.append(f"energy={energy.reading.source} over {energy.calls} calls")
        row.update(
            runtime=runtime.runtime_name,
            precision=artifact.precision,
            n_samples=stats.n,
            latency_ms_p50=stats.p50,
            latency_ms_p90=stats.p90,
            latency_ms_p99=stats.p99,
            latency_ms_mean=stats.mean,
            latency_ms_std=stats.std,
            latency_ms_min=stats.min,
            latency_ci95_rel=stats.ci_rel_halfwidth,
            noisy=stats.noisy,
            throughput_items_s=throughput,
            # ONNX Runtime and TensorRT allocate outside torch: their memory is nvml_process_mem_mb's.
            peak_device_mem_mb=device_peak_mb(self.device) if runtime.allocates_through_torch else math.nan,
            peak_device_reserved_mb=(
                device_peak_reserved_mb(self.device) if runtime.allocates_through_torch else math.nan
            ),
            peak_host_rss_mb=rss.peak_mb,
            model_bytes=model_bytes,
            params=params,
            gflops_per_item=gflops_per_item,
            achieved_gflops=gflops_per_item * throughput,
            pct_of_peak=pct_of_peak(
                self.peak, artifact.precision, gflops_per_item * throughput * 1e9, self.device
            ),
            energy_j_per_item=energy.reading.joules / (energy.calls * cell.batch_size)
            if energy
            else math.nan,
            avg_power_w=energy.reading.avg_power_w if energy else math.nan,
            transfer_h2d_ms=transfers[0],
            transfer_d2h_ms=transfers[1],
            includes_transfers=self.config.include_transfers and self.device.is_cuda,
            nvml_process_mem_mb=gpu.process_mem_mb,
            sm_clock_mhz_start=gpu.state_start.sm_clock_mhz,
            sm_clock_mhz_end=gpu.state_end.sm_clock_mhz,
            gpu_temp_c_start=gpu.state_start.temperature_c,
            gpu_temp_c_end=gpu.state_end.temperature_c,
            psnr_db=fidelity.psnr_db,
            max_abs_err=fidelity.max_abs_err,
            cosine=fidelity.cosine,
            fidelity_ok=fidelity.ok(self.config.min_psnr_db),
            notes="; ".join(notes),
        )
        return sampled.latencies_ms


_NO_STATE = GpuState(sm_clock_mhz=math.nan, temperature_c=math.nan)


@dataclass(frozen=True)
class _Energy:
    reading: EnergyReading
    calls: int


class _GpuWatch:
    """What NVML says about a cell: clocks and temperature at the edges of the timed region,
    process memory, and the energy of an energy window.

    The energy is measured over its own window of back-to-back calls, at least
    ENERGY_WINDOW_S long, right after the timed region: a GPU's timed region can be a
    few milliseconds (the median converges fast), far below what NVML's power and
    energy readings resolve. Everything stays NaN on CPU, where there is no portable
    power reading, and where NVML is missing or refuses.
    """

    def __init__(self, nvml: Nvml | None, device: Device) -> None:
        self._nvml = nvml
        self._device = device
        self.state_start = self.state_end = _NO_STATE
        self.process_mem_mb = math.nan

    def timed_start(self) -> None:
        if self._nvml:
            self.state_start = self._nvml.state()

    def timed_end(self) -> None:
        if self._nvml:
            self.state_end = self._nvml.state()
            self.process_mem_mb = self._nvml.process_memory_mb()

    def measure_energy(self, call: Callable[[], Any]) -> _Energy | None:
        if self._nvml is None:
            return None
        meter = EnergyMeter(
            self._nvml.power_w, self._nvml.energy_j, prefer_counter=not self._nvml.has_instant_power
        )
        synchronize(self._device)
        calls = 0
        meter.start()
        try:
            t0 = time.perf_counter()
            while calls == 0 or time.perf_counter() - t0 < ENERGY_WINDOW_S:
                call()
                synchronize(self._device)  # one call at a time, as in the timed region
                calls += 1
        finally:
            meter.stop()
        reading = meter.reading()
        return _Energy(reading, calls) if reading is not None else None


def usable_peak(device: Device, name: str) -> PeakResult | None:
    """The device's cached measured peak (`python -m bench peak`), if one matches this process.

    Measuring a peak takes minutes, so a run never does it implicitly; without a
    cached peak the `pct_of_peak` column stays empty.
    """
    cached = read_cached(name)
    if cached is None or cached.kind != device.kind:
        return None
    if not device.is_cuda and cached.threads != torch.get_num_threads():
        return None
    return cached


#: which measured GEMM rate bounds a row of each precision; fp32 on CUDA convolutions runs
#: as TF32 by default in PyTorch (cudnn.allow_tf32), so its ceiling is the TF32 rate.
_PEAK_KEY = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "int8": "int8", "mixed": "fp16"}


def pct_of_peak(peak: PeakResult | None, precision: str, achieved_flops_s: float, device: Device) -> float:
    if peak is None:
        return math.nan
    key = _PEAK_KEY.get(precision, "fp32")
    if key == "fp32" and device.is_cuda and "tf32" in peak.flops:
        key = "tf32"
    rate = peak.flops.get(key)
    return 100.0 * achieved_flops_s / rate if rate else math.nan


#: how allocators other than torch's CUDA one say they ran out: c10's CPU allocator (a plain
#: RuntimeError), ONNX Runtime's arena and CUDA provider (its own exception types).
_OOM_MESSAGES = ("can't allocate memory", "failed to allocate memory", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether a cell failed for want of memory (an `oom` row) rather than a bug (an `error` row)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return any(message in text for message in _OOM_MESSAGES)


def _artifact_bytes(artifact: Artifact) -> int | None:
    path = getattr(artifact, "path", None)
    if path is None:
        return None
    path = Path(path)
    total = path.stat().st_size if path.is_file() else 0
    data = path.with_name(path.name + ".data")  # ONNX external weights, if any
    return total + (data.stat().st_size if data.is_file() else 0)


def _release_device_cache(device: Device) -> None:
    if device.is_cuda:
        gc.collect()
        torch.cuda.empty_cache()


def _where(exc: BaseException) -> str:
    """The innermost frame of an error, so an `error` row points at the code that failed."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"at {Path(last.filename).name}:{last.lineno} in {last.name}"


@contextlib.contextmanager
def _strict_fp32(device: Device) -> Iterator[None]:
    """Compute the reference in true fp32: TF32 off on CUDA so fidelity measures the pipeline alone."""
    if not device.is_cuda:
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
