"""Planning a run: which models and pipelines, the default pipelines per device, why a cell is skipped, the cells.

Everything here is decided before any model is built, so bad input fails at once
and a cell that cannot run is a `skipped` row with its reason, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

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
    "openvino",
    "openvino:bf16",
    "ov-int8",
    "ov-int8+openvino:bf16",
    "prune:0.5",
    "prune:0.5+int8",
    "fp16+sparse24",
    "tensorrt:fp16",
    "tensorrt:int8",
)
#: the defaults of the generate and sample workloads (a subset of what they can run, asked for by name):
#: a causal LM's are the precisions, compile and torchao's weight quantizers; a diffusion pipeline's the
#: passes that pay off on its convolutional networks. Kept short on purpose: each is a whole generation
#: or sampling run per sample, so on a 2-core CPU the default matrix stays within 10 minutes. ldm takes
#: int8-dynamic rather than static int8: measured on ldm small (results/cpu-gen-ldm-20261202), static
#: int8's error grows over the 10 guided steps to 19 dB PSNR, dynamic's stays at 65 dB.
WORKLOAD_DEFAULTS: dict[str, tuple[str, ...]] = {
    "forward": DEFAULT_PIPELINES,
    "generate": (
        "fp32",
        "fp16",
        "bf16",
        "compile",
        "compile:reduce-overhead",
        "int8wo",
        "int8dq",
        "bf16+int4wo",
    ),
    "sample": ("fp32", "fp16", "bf16", "channels_last", "compile", "cudagraph", "int8-dynamic"),
}
#: default pipelines of a workload left out of the default matrix on a CPU (asked for by name they run), and
#: why; measured on the 2-core EPYC in a fresh install (Inductor's cache cold): compile's build and first
#: generation took 31-33 s + 28-32 s per gpt small cell and its build 57 s per ldm small cell, for 1.19-1.25x
#: (gpt) and 1.09-1.19x (ldm), which put the default run past 10 minutes
CPU_LEFT_OUT: dict[str, dict[str, str]] = {
    "generate": {"compile": "on CPU its compile takes about a minute per cell for 1.2x; ask for it by name"},
    "sample": {
        "compile": "on CPU its compile takes about a minute per cell for 1.1-1.2x; ask for it by name"
    },
}
#: why a generate cell skips a pass that runs on other workloads
GENERATE_REFUSALS: dict[str, str] = {
    "channels_last": "it reorders 4-D tensors, and a Transformer has none",
    "cudagraph": "it captures one input shape, and a generation has two (prefill, decode): "
    "use compile:reduce-overhead, which captures each",
    "prune": "pruning attention heads and MLP channels of a causal LM with its KV cache is not built yet "
    "(Torch-Pruning's dependency graph is set up for the image models)",
    "sparsity": "not set up for the causal-LM interface yet",
    "sparse24": "not set up for the causal-LM interface yet",
    "pt2e-int8": "its torch.export graph takes one forward call, not a generation with a KV cache",
}


def resolve_models(
    names: tuple[str, ...] | None,
    custom: tuple[str, ...],
    weights: str | None = None,
    check_size: str | None = None,
) -> list[ModelSpec]:
    """The reference models named (None: all of them), then the user's models (``pkg.module:factory``,
    ``hf:PATH``); with ``weights``, that safetensors checkpoint is loaded into the one model named,
    and checked now against a build at ``check_size`` when one is given (the run's, at planning)."""
    chosen = list(MODELS) if names is None else names
    specs = []
    for name in chosen:
        if name not in MODELS:
            raise ValueError(
                f"unknown model {name!r}; choose from {', '.join(MODELS)}{did_you_mean(name, list(MODELS))}"
            )
        specs.append(MODELS[name])
    specs += [load_user_model(path) for path in custom]
    if weights is not None:
        if len(specs) != 1:
            raise ValueError(
                f"--weights loads one checkpoint into one model; this run has {len(specs)} models"
            )
        specs = [with_weights(specs[0], weights, check_size)]
    return specs


def load_user_model(path: str) -> ModelSpec:
    """``hf:PATH`` (a local Hugging Face folder) or ``pkg.module:factory``."""
    if path.startswith("hf:"):
        from reference_models.hf import load_hf_folder

        return load_hf_folder(path)
    return load_factory(path)


def with_weights(spec: ModelSpec, path: str, check_size: str | None = None) -> ModelSpec:
    """The spec whose every build loads ``path``; with ``check_size``, loaded once now into a build at
    that size, so a checkpoint of the wrong shapes is one line before the run starts, not an error row
    per cell."""
    from reference_models.weights import load_weights

    build = spec.build
    if check_size is not None:
        load_weights(build(check_size if check_size in spec.sizes else spec.sizes[0]), path)

    def build_with_weights(size: str) -> nn.Module:
        module = build(size)
        load_weights(module, path)
        return module

    return replace(spec, build=build_with_weights, description=f"{spec.description} (weights from {path})")


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
    """Every default candidate of any workload whose passes are registered in this install."""
    parsed = []
    for text in dict.fromkeys(t for texts in WORKLOAD_DEFAULTS.values() for t in texts):
        try:
            parsed.append(parse_pipeline(text))
        except PipelineError:
            continue  # a default whose pass is not registered in this install
    return parsed


def workload_reason(pipeline: Pipeline, workload: str) -> str | None:
    """Why a pipeline cannot run a workload (None: it can): a generation runs torch models only."""
    if workload != "generate":
        return None
    for step in pipeline.passes:
        if step.name in GENERATE_REFUSALS:
            return f"{step.spec} on a generate model: {GENERATE_REFUSALS[step.name]}"
    if pipeline.final_kind != "torch":
        return (
            f"the generate workload runs torch models; this pipeline makes {pipeline.final_kind} models, "
            "and an exported decode loop with a KV cache is not built yet"
        )
    return None


def skip_reason(pipeline: Pipeline, device: Device, workload: str = "forward") -> str | None:
    """Why a pipeline cannot run on ``device`` (None: it can): the workload does not take it, one of its
    passes does not apply, or the runtime its final artifact needs does not (an ONNX model on a GPU
    without onnxruntime's CUDA provider)."""
    reason = workload_reason(pipeline, workload)
    if reason is not None:
        return reason
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
    #: a server cell's offered rate (None: not a server cell, or a --find-peak search over rates)
    target_qps: float | None = None


def in_defaults(pipeline: Pipeline, workload: str, on_gpu: bool) -> bool:
    """Whether a default pipeline belongs to a workload's default cells on this kind of device."""
    if pipeline.text not in WORKLOAD_DEFAULTS[workload]:
        return False
    return on_gpu or pipeline.text not in CPU_LEFT_OUT.get(workload, {})


def plan_cells(
    specs: list[ModelSpec],
    size: str,
    pipelines: list[Pipeline],
    batch_sizes: tuple[int, ...],
    repeats: int = 1,
    defaults: bool = False,
    on_gpu: bool = False,
) -> list[Cell]:
    """Model-major order, so each model is built once and its reference reused across cells.

    With ``repeats`` > 1 the whole matrix is run that many times, one pass after the
    other (not each cell N times in a row): drift over the run (a neighbour starting,
    the CPU heating) then lands on every cell alike and shows as spread between
    repeats, which compare pools (bench.analysis.verdict), instead of as a
    difference between cells.

    ``defaults``: the pipelines are the default matrix, so each model gets those of them
    its workload has as defaults (``WORKLOAD_DEFAULTS``, less ``CPU_LEFT_OUT`` unless
    ``on_gpu``); asked for by name, every pipeline meets every model, and one a workload
    cannot run is a skipped row.
    """
    cells: list[Cell] = []
    for repeat in range(repeats):
        for spec in specs:
            cell_size = size if size in spec.sizes else spec.sizes[0]
            own = [p for p in pipelines if not defaults or in_defaults(p, spec.workload, on_gpu)]
            for batch in batch_sizes:
                for pipeline in own:
                    cells.append(Cell(len(cells), spec, cell_size, pipeline, batch, repeat))
    return cells


def at_rates(cells: list[Cell], rates: tuple[float, ...] | None) -> list[Cell]:
    """A server run's cells: each planned cell once per offered rate (``--target-qps``), the rates
    innermost, so a pipeline's loads run one after another; ids renumbered in that order. Without
    rates (a ``--find-peak`` search, a single-stream soak) the cells are as planned."""
    if not rates:
        return cells
    out: list[Cell] = []
    for cell in cells:
        for rate in rates:
            out.append(replace(cell, cell_id=len(out), target_qps=rate))
    return out
