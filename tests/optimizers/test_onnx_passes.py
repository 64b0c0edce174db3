"""ONNX export (`onnx`), the execution-provider pass (`ort`) and the ONNX Runtime runtime, on tiny models."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from bench.core.artifact import OnnxArtifact, TorchArtifact  # noqa: E402
from bench.core.device import Device  # noqa: E402
from bench.core.errors import PipelineError  # noqa: E402
from bench.runtimes import load  # noqa: E402
from bench.runtimes.ort import OrtRuntime  # noqa: E402
from optimizers import onnx_passes  # noqa: E402
from optimizers.registry import PassContext, parse_pipeline  # noqa: E402
from reference_models import get_model  # noqa: E402
from tests.conftest import pass_context

CPU = Device("cpu")


def make_ctx(model: str, tmp_path: Path, batch: int = 2) -> PassContext:
    spec = get_model(model)
    return pass_context(
        spec.example_inputs(batch, "tiny", 0),
        tmp_path,
        calibration=lambda n: (spec.example_inputs(batch, "tiny", 1000 + i) for i in range(n)),
    )


def build(pipeline: str, model: str, tmp_path: Path, batch: int = 2, module: torch.nn.Module | None = None):
    """Apply a pipeline's passes to a tiny model; return (artifact, reference output, context)."""
    spec = get_model(model)
    module = module if module is not None else spec.build("tiny")
    ctx = make_ctx(model, tmp_path, batch)
    with torch.inference_mode():
        ref = module(*ctx.example_inputs)
    art = TorchArtifact(module=module)
    for step in parse_pipeline(pipeline).passes:
        art = step.apply(art, ctx)
    return art, ref, ctx


def run_once(art, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    runtime = load(art, CPU)
    return runtime.to_torch(runtime.run(runtime.prepare(inputs)))


def test_importing_bench_and_passes_does_not_import_onnxruntime() -> None:
    code = (
        "import sys, bench, optimizers\n"
        "from optimizers import parse_pipeline\n"
        "parse_pipeline('int8'); parse_pipeline('ort')\n"
        "bad = [m for m in ('onnxruntime', 'onnx', 'onnxscript') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pipeline_parsing() -> None:
    assert [p.spec for p in parse_pipeline("onnx").passes] == ["onnx"]
    assert parse_pipeline("onnx").final_kind == "onnx"  # an onnx artifact runs on ORT
    assert [p.spec for p in parse_pipeline("ort").passes] == ["onnx", "ort"]
    assert [p.spec for p in parse_pipeline("onnx+ort:cpu").passes] == ["onnx", "ort:cpu"]
    assert [p.spec for p in parse_pipeline("onnx:dynamo").passes] == ["onnx:dynamo"]
    with pytest.raises(PipelineError, match="ort provider 'tpu' unknown; choose from cpu, cuda, trt"):
        parse_pipeline("ort:tpu")
    with pytest.raises(PipelineError, match="exporter 'jit' unknown"):
        parse_pipeline("onnx:jit")
    with pytest.raises(PipelineError, match="needs a torch artifact"):
        parse_pipeline("ort+fp16")


def test_ort_applies_to_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_pipeline("ort").passes[-1].applies_to(CPU) is None
    assert "needs a CUDA device" in parse_pipeline("ort:cuda").passes[-1].applies_to(CPU)
    assert "needs a CUDA device" in parse_pipeline("ort:trt").passes[-1].applies_to(CPU)
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():  # a CPU-only build
        for text in ("ort", "ort:cuda"):
            assert "has no CUDAExecutionProvider" in parse_pipeline(text).passes[-1].applies_to(
                Device("cuda", 0)
            )
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    assert "onnxruntime is not installed" in parse_pipeline("ort").passes[-1].applies_to(CPU)


@pytest.mark.parametrize("model", ["dcgan", "vae", "unet"])
def test_fp32_onnx_matches_eager(model: str, tmp_path: Path) -> None:
    art, ref, ctx = build("onnx", model, tmp_path)
    assert isinstance(art, OnnxArtifact) and art.path.is_file()
    assert art.exporter == "torchscript" and "exporter=torchscript" in art.notes
    assert art.precision == "fp32"
    out = run_once(art, ctx.example_inputs)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-4


def test_batch_axis_is_dynamic_even_from_a_batch_of_one(tmp_path: Path) -> None:
    art, _, _ = build("ort", "unet", tmp_path, batch=1)
    runtime = OrtRuntime(art, CPU)
    for spec in runtime.session.get_inputs() + runtime.session.get_outputs():
        assert isinstance(spec.shape[0], str), f"{spec.name} has a static batch {spec.shape}"
    spec = get_model("unet")
    module = spec.build("tiny")
    inputs = spec.example_inputs(3, "tiny", 5)
    with torch.inference_mode():
        ref = module(*inputs)
    assert (runtime.to_torch(runtime.run(runtime.prepare(inputs))) - ref).abs().max().item() < 1e-4
    assert [i.name for i in runtime.session.get_inputs()] == ["input_0", "input_1"]
    assert runtime.runtime_name == "onnxruntime:CPUExecutionProvider"


def test_runtime_casts_inputs_to_declared_types(tmp_path: Path) -> None:
    art, ref, ctx = build("onnx", "unet", tmp_path)
    runtime = OrtRuntime(art, CPU)
    x, t = ctx.example_inputs
    feed = runtime.prepare((x.double(), t.int()))  # float64 and int32 in, float32 and int64 fed
    assert feed["input_0"].dtype == np.float32 and feed["input_1"].dtype == np.int64
    assert (runtime.to_torch(runtime.run(feed)) - ref).abs().max().item() < 1e-4


def test_runtime_threads_and_provider_errors(tmp_path: Path) -> None:
    art, _, _ = build("ort", "dcgan", tmp_path)
    assert art.provider == "cpu" and "provider=cpu" in art.notes
    runtime = OrtRuntime(art, CPU)
    assert runtime.session.get_session_options().intra_op_num_threads == torch.get_num_threads()
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        OrtRuntime(art.evolve(provider="cuda"), CPU)


def test_export_never_mutates_the_input_artifact(tmp_path: Path) -> None:
    module = get_model("dcgan").build("tiny")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    art = TorchArtifact(module=module)
    step = parse_pipeline("onnx").passes[0]
    step.apply(art, make_ctx("dcgan", tmp_path))
    assert art.kind == "torch" and art.module is module and not module.training
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_compiled_and_bf16_artifacts_are_refused(tmp_path: Path) -> None:
    step = parse_pipeline("onnx").passes[0]
    module = get_model("dcgan").build("tiny")
    ctx = make_ctx("dcgan", tmp_path)
    with pytest.raises(PipelineError, match="onnx cannot export a module that is already compiled"):
        step.apply(TorchArtifact(module=module, compiled=True), ctx)
    with pytest.raises(PipelineError, match="bf16"):
        step.apply(TorchArtifact(module=module, precision="bf16", input_dtype=torch.bfloat16), ctx)


def test_fp16_artifact_exports_in_fp16(tmp_path: Path) -> None:
    art, ref, ctx = build("fp16+onnx", "dcgan", tmp_path)
    assert art.precision == "fp16"
    runtime = OrtRuntime(art, CPU)
    assert runtime.session.get_inputs()[0].type == "tensor(float16)"
    out = runtime.to_torch(runtime.run(runtime.prepare(ctx.example_inputs)))  # fp32 inputs cast in prepare
    ref32 = get_model("dcgan").build("tiny")(*ctx.example_inputs).detach()
    assert out.dtype == torch.float32 and (out - ref32).abs().max().item() < 2e-2


def test_dynamo_fallback_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracer says no\nmore detail")

    monkeypatch.setattr(onnx_passes, "_export_torchscript", broken)
    art, ref, ctx = build("onnx", "dcgan", tmp_path)
    assert art.exporter == "dynamo"
    assert any(
        n.startswith("exporter=dynamo (torchscript failed: RuntimeError: tracer says no") for n in art.notes
    )
    assert (run_once(art, ctx.example_inputs) - ref).abs().max().item() < 1e-4


def test_ort_end_to_end_through_the_runner(run_matrix) -> None:
    frame = run_matrix(models=("vae",), pipelines=("fp32", "ort", "onnx", "ort:cuda"), batch_sizes=(2,))
    assert list(frame["pipeline"]) == ["fp32", "ort", "onnx", "ort:cuda"]
    assert list(frame["status"]) == ["ok", "ok", "ok", "skipped"], frame["reason"].tolist()
    for row in frame.iloc[1:3].itertuples():
        assert row.runtime == "onnxruntime:CPUExecutionProvider"
        assert row.precision == "fp32" and row.max_abs_err < 1e-4
        assert row.model_bytes > 0 and row.build_s > 0
        assert "exporter=torchscript" in row.notes
    assert "needs a CUDA device" in frame.iloc[3]["reason"]


def test_channels_last_artifact_exports_like_any_other(tmp_path: Path) -> None:
    art, ref, ctx = build("channels_last+onnx", "vae", tmp_path)
    assert (run_once(art, ctx.example_inputs) - ref).abs().max().item() < 1e-4
