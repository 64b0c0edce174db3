"""What can be benchmarked: models (reference and custom) and default pipelines per device."""

from __future__ import annotations

from bench.core.device import Device
from bench.core.errors import PipelineError
from optimizers.registry import Pipeline, all_passes, parse_pipeline
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


def resolve_models(names: tuple[str, ...], custom: tuple[str, ...]) -> list[ModelSpec]:
    from reference_models import get_model
    from reference_models.custom import load_factory

    return [get_model(n) for n in names] + [load_factory(path) for path in custom]


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
    if pipeline.final_kind == "onnx" and not any(step.name == "ort" for step in pipeline.passes):
        ort = all_passes().get("ort")
        reason = ort().applies_to(device) if ort is not None else "no ONNX runtime is registered"
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
