"""int8 passes: static QDQ and dynamic quantization with onnxruntime, and the PT2E route's availability."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from bench.core.artifact import OnnxArtifact, TorchArtifact  # noqa: E402
from bench.core.device import Device  # noqa: E402
from bench.core.errors import NotApplicable, PipelineError  # noqa: E402
from bench.measure.fidelity import compare_outputs  # noqa: E402
from bench.runtimes import load  # noqa: E402
from optimizers import ort_quant  # noqa: E402
from optimizers.quantize import Int8, Int8Dynamic  # noqa: E402
from optimizers.registry import parse_pipeline  # noqa: E402
from reference_models import get_model  # noqa: E402
from tests.conftest import pass_context

CPU = Device("cpu")
INT8_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}


def quantized(pipeline: str, model: str, tmp_path: Path, batch: int = 2) -> tuple[OnnxArtifact, float]:
    """Run a pipeline on a tiny model; return the artifact and its PSNR against eager fp32."""
    spec = get_model(model)
    module = spec.build("tiny")
    inputs = spec.example_inputs(batch, "tiny", 0)
    ctx = pass_context(
        inputs,
        tmp_path,
        calibration=lambda n: (spec.example_inputs(batch, "tiny", 1000 + i) for i in range(n)),
    )
    with torch.inference_mode():
        ref = module(*inputs)
    art = TorchArtifact(module=module)
    for step in parse_pipeline(pipeline).passes:
        art = step.apply(art, ctx)
    assert isinstance(art, OnnxArtifact)
    runtime = load(art, CPU)
    out = runtime.to_torch(runtime.run(runtime.prepare(inputs)))
    return art, compare_outputs(ref, out).psnr_db


def int8_tensors(path: Path) -> dict[str, int]:
    """Count the graph's real 8-bit evidence: Q/DQ nodes with int8/uint8 zero points, integer ops."""
    model = onnx.load(str(path))
    types = {i.name: i.data_type for i in model.graph.initializer}
    counts = {"qdq": 0, "integer_ops": 0}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            counts["qdq"] += types.get(node.input[2]) in INT8_TYPES
        if node.op_type in (
            "QLinearConv",
            "QLinearMatMul",
            "ConvInteger",
            "MatMulInteger",
            "DynamicQuantizeLinear",
        ):
            counts["integer_ops"] += 1
    return counts


@pytest.mark.parametrize("model", ["dcgan", "vae", "unet"])
def test_static_int8_is_int8_and_close(model: str, tmp_path: Path) -> None:
    art, psnr = quantized("int8", model, tmp_path)
    assert art.precision == "int8" and art.path.name == "model.int8.onnx"
    assert psnr > 25
    assert int8_tensors(art.path)["qdq"] > 0
    notes = "; ".join(art.notes)
    assert "calibration=minmaxx8" in notes and "activations=u8 weights=s8" in notes
    if model == "dcgan":  # only ConvTranspose: the last-resort recipe, said so
        assert "recipe=with ConvTranspose" in notes
    else:
        assert "recipe=conv/matmul/gemm per-channel" in notes and "Conv=" in notes


def test_percentile_calibration(tmp_path: Path) -> None:
    art, psnr = quantized("int8:percentile:2", "vae", tmp_path)
    assert psnr > 25 and int8_tensors(art.path)["qdq"] > 0
    assert "calibration=percentilex2" in art.notes


def test_entropy_is_not_min_max(tmp_path: Path) -> None:
    """quantize_static's own entropy calibrator degenerates to min-max; ours must not."""

    def scales(path: Path) -> list[float]:
        model = onnx.load(str(path))
        init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        return [float(init[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]

    minmax, _ = quantized("int8:minmax:2", "dcgan", tmp_path / "a")
    entropy, psnr = quantized("int8:entropy:2", "dcgan", tmp_path / "b")
    assert "calibration=entropyx2" in entropy.notes and psnr > 25
    assert scales(minmax.path) != scales(entropy.path)


def test_dynamic_int8(tmp_path: Path) -> None:
    art, psnr = quantized("int8-dynamic", "unet", tmp_path)
    assert art.precision == "int8" and psnr > 25
    assert int8_tensors(art.path)["integer_ops"] > 0
    with pytest.raises(NotApplicable, match="nothing quantized"):
        quantized("int8-dynamic", "dcgan", tmp_path / "dcgan")


def test_a_model_with_nothing_to_quantize_is_a_skipped_cell(run_matrix) -> None:
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "int8-dynamic"), batch_sizes=(1,))
    assert list(frame["status"]) == ["ok", "skipped"]
    assert "nothing quantized" in frame.iloc[1]["reason"]


def test_arguments_are_validated() -> None:
    assert [p.spec for p in parse_pipeline("int8").passes] == ["onnx", "int8"]
    assert [p.spec for p in parse_pipeline("int8-dynamic").passes] == ["onnx", "int8-dynamic"]
    step = parse_pipeline("int8:percentile:16").passes[-1]
    assert (step.method, step.batches) == ("percentile", 16)
    for bad, match in [
        ("int8:kl", "calibration method 'kl' unknown; choose from minmax, entropy, percentile"),
        ("int8:entropi", "did you mean entropy"),
        ("int8:minmax:many", "not an integer"),
        ("int8:minmax:0", "must be an integer in 1.."),
        ("int8:minmax:4:2", "not understood"),
        ("int8-dynamic:all", "not understood"),
        ("int8-dynamic:cnv", "did you mean conv"),
    ]:
        with pytest.raises(PipelineError, match=match) as info:
            parse_pipeline(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(PipelineError, match="needs a torch artifact but int8 gives onnx") as info:
        parse_pipeline("int8+fp16")
    assert "\n" not in str(info.value)


def test_int8_refuses_a_non_fp32_onnx_model(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="int8 quantizes an fp32 model; this one is fp16"):
        parse_pipeline("fp16+int8")  # before any model is built
    fp16 = OnnxArtifact(path=tmp_path / "never-read.onnx", precision="fp16")
    for step in (Int8(), Int8Dynamic()):  # applied by hand: the same rule, the same words
        with pytest.raises(PipelineError, match=f"{step.name} quantizes an fp32 model; this one is fp16"):
            step.apply(fp16, pass_context(get_model("dcgan").example_inputs(1, "tiny", 0), tmp_path))


def test_int8_arguments_are_typed_and_canonical() -> None:
    assert Int8().spec == "int8" and (Int8().method, Int8().batches) == ("minmax", 8)
    assert Int8(method="entropy", batches=16).spec == "int8:entropy:16"
    assert Int8(batches=16).spec == "int8:minmax:16"
    assert Int8.from_arg("percentile").spec == "int8:percentile"
    assert Int8Dynamic(conv=True).spec == "int8-dynamic:conv" and Int8Dynamic().spec == "int8-dynamic"
    with pytest.raises(PipelineError, match="must be an integer in 1..1024"):
        Int8(batches=0)
    with pytest.raises(PipelineError, match="did you mean minmax"):
        Int8(method="minmx")


def test_a_failing_recipe_falls_back_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime.quantization as ortq

    real = ortq.quantize_static

    def picky(*args: object, **kwargs: object) -> None:
        if kwargs.get("per_channel"):
            raise ValueError("Quantization parameter shared mode is not supported for weight yet")
        real(*args, **kwargs)

    monkeypatch.setattr(ortq, "quantize_static", picky)
    art, psnr = quantized("int8", "unet", tmp_path)
    assert psnr > 25
    recipe = next(n for n in art.notes if n.startswith("int8 recipe="))
    assert recipe.startswith(
        "int8 recipe=conv/matmul/gemm per-tensor (after conv/matmul/gemm per-channel: ValueError"
    )


def test_quantization_failure_is_an_error_row_and_the_run_goes_on(run_matrix, monkeypatch) -> None:
    import onnxruntime.quantization as ortq

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("quantizer exploded\ntraceback noise")

    monkeypatch.setattr(ortq, "quantize_static", broken)
    frame = run_matrix(models=("vae",), pipelines=("fp32", "int8", "ort"), batch_sizes=(2,))
    assert list(frame["status"]) == ["ok", "error", "ok"], frame["reason"].tolist()
    reason = frame.iloc[1]["reason"]
    assert "failed with every recipe" in reason and "quantizer exploded" in reason and "\n" not in reason


def test_pt2e_reports_why_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    step = parse_pipeline("pt2e-int8").passes[0]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a)
    )
    reason = step.applies_to(CPU)
    assert reason is not None and "torchao" in reason and "PT2E" in reason


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao is not installed")
@pytest.mark.slow
def test_pt2e_int8_runs_when_torchao_is_installed(tmp_path: Path) -> None:
    spec = get_model("vae")
    module = spec.build("tiny")
    inputs = spec.example_inputs(2, "tiny", 0)
    ctx = pass_context(
        inputs, tmp_path, calibration=lambda n: (spec.example_inputs(2, "tiny", 9 + i) for i in range(n))
    )
    art = parse_pipeline("pt2e-int8").passes[0].apply(TorchArtifact(module=module), ctx)
    assert art.precision == "int8" and art.compiled
    runtime = load(art, CPU)
    with torch.inference_mode():
        ref = module(*inputs)
    assert compare_outputs(ref, runtime.to_torch(runtime.run(runtime.prepare(inputs)))).psnr_db > 20


def test_vnni_detection_is_a_bool() -> None:
    assert isinstance(ort_quant.cpu_has_vnni(), bool)


def test_preprocess_falls_back_to_onnx_shapes_and_leaves_no_litter(tmp_path: Path, monkeypatch) -> None:
    import onnxruntime.quantization.shape_inference as shapes

    real = shapes.quant_pre_process

    def no_symbolic(*args: object, **kwargs: object) -> None:
        if not kwargs.get("skip_symbolic_shape"):
            open("sym_shape_infer_temp.onnx", "w").close()  # what the real failure leaves behind
            raise Exception("Incomplete symbolic shape inference")
        real(*args, **kwargs)

    monkeypatch.setattr(shapes, "quant_pre_process", no_symbolic)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    art, psnr = quantized("int8", "vae", tmp_path / "work")
    assert psnr > 25
    assert (
        "preprocess=onnx-shapes (symbolic failed: Exception: Incomplete symbolic shape inference)"
        in art.notes
    )
    assert list(cwd.iterdir()) == []
