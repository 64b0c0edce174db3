"""Rebuild one cell's artifact: from a run folder's row and its env.json, or from a model, pipeline and batch.

A cell is rebuilt the way the harness built it (bench.harness.cell.measure_cell): the
seeded fp32 model and inputs from ``References`` with the run's seed, the passes applied
in order with a ``PassContext`` that carries the run's batch sizes (a TensorRT engine
gets the same optimization profiles as the one measured) and calibration batches drawn
with the same seeds. So the exported artifact is the measured one, not a look-alike,
and the fp32 reference it is checked against is the row's.

Only forward-workload models are exported (one forward call is what an ONNX graph or a
Triton model serves); a generation with a KV cache or a sampling loop is refused in
one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.artifact import Artifact, OnnxArtifact, TorchArtifact
from bench.core.device import Device, check_available, parse_device
from bench.core.errors import ConfigError, RunError, UsageError
from bench.core.text import one_line
from bench.harness.config import MAX_SEED
from bench.harness.plan import Cell, resolve_models, skip_reason
from bench.harness.reference import Reference, References
from optimizers.registry import PassContext, parse_pipeline
from reference_models import MODELS
from reference_models.spec import ModelSpec


class ExportError(UsageError):
    """A cell that cannot be exported as asked: one line, exit code 2."""


@dataclass(frozen=True)
class CellRequest:
    """What identifies the artifact to rebuild: the row's model, size, pipeline, batch, device and seed."""

    model: str
    size: str
    pipeline: str
    batch_size: int
    device: str
    seed: int = 0
    weights: str | None = None
    #: every batch size of the run (TensorRT builds one profile per batch size); the cell's alone when fresh
    batch_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class FromRun:
    """The run a request was read from: where, which row, and the run's environment."""

    path: Path
    run_id: str
    row: dict[str, Any]
    env: dict[str, Any]


@dataclass(frozen=True)
class Built:
    """A rebuilt cell: its final artifact, the last ONNX model on the way (a TensorRT engine's source) and
    the fp32 reference (model, seeded inputs, output) it is compared against."""

    request: CellRequest
    spec: ModelSpec
    cell: Cell
    device: Device
    artifact: Artifact
    last_onnx: OnnxArtifact | None
    reference: Reference


def resolve_spec(model: str, weights: str | None) -> ModelSpec:
    """A reference model by name, else a user's model (``pkg.module:factory``, ``hf:PATH``), as the worker does."""
    models, custom = ((model,), ()) if model in MODELS else ((), (model,))
    try:
        (spec,) = resolve_models(models, custom, weights)
    except ValueError as exc:
        raise ExportError(str(exc).splitlines()[0]) from None
    return spec


def check_workload(spec: ModelSpec) -> None:
    if spec.workload != "forward":
        raise ExportError(
            f"export is not supported for the {spec.workload} workload yet ({spec.name}): it exports one "
            "forward call, and a generation or a sampling loop is more than one"
        )


def _int(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def plain(value: Any) -> Any:
    """A table value as JSON: pandas' NA and NaN as None, numpy scalars as Python numbers."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def request_from_run(run_path: Path, cell_id: int, device: str | None) -> tuple[CellRequest, FromRun]:
    """The request for row ``cell_id`` of a run folder; RunError/ExportError in one line when it cannot be."""
    from bench.results.store import load_run

    run = load_run(Path(run_path))
    cells = run.cells
    match = cells[cells["cell_id"] == cell_id]
    if match.empty:
        ids = sorted(int(c) for c in cells["cell_id"])
        held = f"cells {ids[0]} to {ids[-1]}" if ids else "no cells"
        raise RunError(f"run {run.name} has no cell {cell_id} (it holds {held})")
    row = {k: plain(v) for k, v in match.iloc[0].to_dict().items()}
    if row.get("status") != "ok":
        raise ExportError(
            f"cell {cell_id} of run {run.name} is {row.get('status')} ({row.get('reason') or 'no reason'}): "
            "only an ok cell has measured numbers to export; build it afresh with --model, --pipeline "
            "and --batch-size"
        )
    config = run.env.get("config") if isinstance(run.env.get("config"), dict) else {}
    seed = _int(config.get("seed")) if config else None
    batch = _int(row.get("batch_size"))
    if batch is None or not row.get("model") or not row.get("pipeline"):
        raise RunError(f"cell {cell_id} of run {run.name} has no model, pipeline or batch size")
    batch_sizes = tuple(b for b in (_int(x) for x in config.get("batch_sizes") or ()) if b is not None)
    request = CellRequest(
        model=str(row["model"]),
        size=str(row.get("size") or ""),
        pipeline=str(row["pipeline"]),
        batch_size=batch,
        device=device or str(row.get("device") or "cpu"),
        seed=seed if seed is not None else 0,
        weights=config.get("weights") if isinstance(config.get("weights"), str) else None,
        batch_sizes=batch_sizes or (batch,),
    )
    return request, FromRun(run.path, run.name, row, run.env)


def _device(text: str) -> Device:
    try:
        device = parse_device(text)
        check_available(device)
    except ValueError as exc:
        raise ConfigError(f"{exc}; pass --device to rebuild on another device") from None
    return device


def build(request: CellRequest, workdir: Path) -> Built:
    """The request's artifact, built in ``workdir`` (which must outlive the Built: an ONNX file is there)."""
    spec = resolve_spec(request.model, request.weights)
    check_workload(spec)
    size = request.size or ("small" if "small" in spec.sizes else spec.sizes[0])
    if size not in spec.sizes:
        if len(spec.sizes) > 1:
            raise ExportError(
                f"model {spec.name!r} has no size {size!r}; choose from {', '.join(spec.sizes)}"
            )
        size = spec.sizes[0]  # a user's model has one size, whatever the run asked (as plan_cells does)
    if request.batch_size < 1:
        raise ExportError(f"--batch-size must be 1 or more (got {request.batch_size})")
    if not 0 <= request.seed <= MAX_SEED:
        raise ExportError(f"--seed must be from 0 to {MAX_SEED} (got {request.seed})")
    pipeline = parse_pipeline(request.pipeline)  # a PipelineError is a UsageError: one line
    device = _device(request.device)
    reason = skip_reason(pipeline, device, spec.workload)
    if reason is not None:
        raise ExportError(f"{pipeline.text} cannot be built on {device}: {reason}")
    cell = Cell(0, spec, size, pipeline, request.batch_size)
    references = References(device, request.seed)
    reference = references.get(cell)
    ctx = PassContext(
        device=device,
        example_inputs=reference.inputs,
        calibration=references.calibration(cell),
        workdir=workdir,
        batch_sizes=tuple(sorted({*request.batch_sizes, request.batch_size})),
        cache_key=f"{spec.name}-{size}-{pipeline.text}",
    )
    artifact: Artifact = TorchArtifact(module=references.device_copy(reference.module))
    last_onnx: OnnxArtifact | None = None
    for step in pipeline.passes:
        try:
            artifact = step.apply(artifact, ctx)
        except UsageError:
            raise
        except Exception as exc:
            raise ExportError(
                f"building {pipeline.text} failed at {step.spec}: {one_line(exc, 300)}"
            ) from None
        if isinstance(artifact, OnnxArtifact):
            last_onnx = artifact
    return Built(request, spec, cell, device, artifact, last_onnx, reference)
