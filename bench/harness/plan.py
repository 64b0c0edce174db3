"""Planning a run: which models and pipelines, the default pipelines per device, why a cell is skipped, the cells.

Everything here is decided before any model is built, so bad input fails at once
and a cell that cannot run is a `skipped` row with its reason, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.device import Device
from bench.core.errors import PipelineError
from bench.core.text import did_you_mean
from bench.runtimes import runtime_unavailable
from optimizers.registry import Pipeline, parse_pipeline
from reference_models import MODELS
from reference_models.custom import load_factory
from reference_models.spec import ModelSpec

#: Candidates for the default matrix, in display order. Those that do not apply on
#: the device (or whose libraries are missing) are left out of the default run;
#: asked for explicitly, they become `skipped` rows with the reason.
DEFAULT_PIPELINES: tuple[str, ...] = (
    "fp32",
    "fp16",
    "bf16",
    "channels_last",
    "compile",
    "compile:max-autotune",
    "cudagraph",
    "ort",
    "int8",
    "prune:0.5",
    "prune:0.5+int8",
    "fp16+sparse24",
    "tensorrt:fp16",
    "tensorrt:int8",
)


def resolve_models(names: tuple[str, ...] | None, custom: tuple[str, ...]) -> list[ModelSpec]:
    """The reference models named (None: all of them), then the user's ``pkg.module:factory`` models."""
    chosen = list(MODELS) if names is None else names
    specs = []
    for name in chosen:
        if name not in MODELS:
            raise ValueError(
                f"unknown model {name!r}; choose from {', '.join(MODELS)}{did_you_mean(name, list(MODELS))}"
            )
        specs.append(MODELS[name])
    return specs + [load_factory(path) for path in custom]


def resolve_pipelines(texts: tuple[str, ...] | None, device: Device) -> list[Pipeline]:
    """Parse the requested pipelines (all errors surface here, before anything runs),
    or choose the defaults that apply on ``device``. fp32 always comes first: it is the baseline."""
    if texts is not None:
        pipelines = [parse_pipeline(t) for t in texts]
        if not any(p.text == "fp32" for p in pipelines):
            pipelines.insert(0, parse_pipeline("fp32"))
        return pipelines
    return [p for p in default_pipelines(device) if p.passes and excluded_reason(p, device) is None]


def default_pipelines(device: Device) -> list[Pipeline]:
    """Every default candidate whose passes are registered in this install."""
    parsed = []
    for text in DEFAULT_PIPELINES:
        try:
            parsed.append(parse_pipeline(text))
        except PipelineError:
            continue  # a default whose pass is not registered in this install
    return parsed


def skip_reason(pipeline: Pipeline, device: Device) -> str | None:
    """Why a pipeline cannot run on ``device`` (None: it can): one of its passes does not apply,
    or the runtime its final artifact needs does not (an ONNX model on a GPU without onnxruntime's CUDA provider)."""
    for step in pipeline.passes:
        reason = step.applies_to(device)
        if reason is not None:
            return f"{step.spec}: {reason}"
    # A pass that chooses the runtime's options (ort:cuda) has checked them in applies_to; otherwise
    # the runtime runs the artifact as it is configured by default on this device.
    if not any(step.configures_runtime for step in pipeline.passes):
        reason = runtime_unavailable(pipeline.final_kind, device)
        if reason is not None:
            return f"runtime: {reason}"
    return None


def excluded_reason(pipeline: Pipeline, device: Device) -> str | None:
    """Why a default candidate stays out of the default matrix on ``device`` (None: it is in)."""
    reason = skip_reason(pipeline, device)
    if reason is not None:
        return reason
    for step in pipeline.passes:
        reason = step.default_exclusion(device)
        if reason is not None:
            return f"{step.spec}: {reason}"
    return None


@dataclass(frozen=True)
class Cell:
    """One point of the matrix: a model at a size, a pipeline, a batch size."""

    cell_id: int
    spec: ModelSpec
    size: str
    pipeline: Pipeline
    batch_size: int
    repeat: int = 0


def plan_cells(
    specs: list[ModelSpec],
    size: str,
    pipelines: list[Pipeline],
    batch_sizes: tuple[int, ...],
    repeats: int = 1,
) -> list[Cell]:
    """Model-major order, so each model is built once and its reference reused across cells.

    With ``repeats`` > 1 the whole matrix is run that many times, one pass after the
    other (not each cell N times in a row): drift over the run (a neighbour starting,
    the CPU heating) then lands on every cell alike and shows as spread between
    repeats, which compare pools (bench.analysis.verdict), instead of as a
    difference between cells.
    """
    cells: list[Cell] = []
    for repeat in range(repeats):
        for spec in specs:
            cell_size = size if size in spec.sizes else spec.sizes[0]
            for batch in batch_sizes:
                for pipeline in pipelines:
                    cells.append(Cell(len(cells), spec, cell_size, pipeline, batch, repeat))
    return cells
