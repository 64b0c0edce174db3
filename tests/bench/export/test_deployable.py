"""The file layouts a deployment loads: an ONNX model with external weights, and a TensorRT engine's repository.

TensorRT is not installed on this project's machines, so the engine here is a stand-in
file of bytes: what is checked is where it goes and what config.pbtxt says about it
(platform, I/O read from the ONNX model it is built from), never that it runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from bench.core.artifact import OnnxArtifact, TensorRTArtifact
from bench.export.build import CellRequest, build
from bench.export.bundle import ExportOptions, write_triton
from bench.export.deployable import write_deployable
from bench.export.triton import parse_pbtxt, problems


def _ort_cell(tmp_path: Path, batch_sizes: tuple[int, ...] = (2,)):  # noqa: ANN202
    request = CellRequest("unet", "tiny", "ort", 2, "cpu", batch_sizes=batch_sizes)
    return build(request, tmp_path / "work")


def test_external_weights_travel_with_the_model_and_load_from_the_triton_folder(tmp_path: Path) -> None:
    built = _ort_cell(tmp_path)
    assert isinstance(built.artifact, OnnxArtifact)
    # re-save the exported model with its weights outside, as the exporter does above 1.5 GB
    source = tmp_path / "ext" / "model.onnx"
    source.parent.mkdir()
    model = onnx.load(str(built.artifact.path))
    onnx.save_model(
        model, str(source), save_as_external_data=True, location="model.onnx.data", size_threshold=0
    )
    built = replace(built, artifact=built.artifact.evolve(path=source))
    out = tmp_path / "out"
    out.mkdir()
    deployable = write_deployable(built, out)
    assert [p.name for p in deployable.files] == ["model.onnx", "model.onnx.data"]
    triton = write_triton(built, deployable, out, ExportOptions())
    version = out / "triton" / triton["model"] / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "model.onnx.data"]
    session = onnxruntime.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    x, t = built.reference.inputs
    (output,) = session.run(None, {"input_0": x.numpy(), "input_1": t.numpy()})
    np.testing.assert_allclose(output, built.reference.output.numpy(), atol=1e-4)
    config = parse_pbtxt((out / triton["config"]).read_text())
    assert problems(config) == []
    assert config["input"][1]["reshape"] == {"shape": []}  # the UNet's [batch] timesteps


def test_an_engine_goes_to_model_plan_with_the_onnx_model_s_inputs(tmp_path: Path) -> None:
    built = _ort_cell(tmp_path, batch_sizes=(1, 2, 8))
    assert isinstance(built.artifact, OnnxArtifact)
    engine = tmp_path / "stand-in.engine"
    engine.write_bytes(b"not a real engine: the layout is under test")
    built = replace(built, artifact=TensorRTArtifact(path=engine, precision="fp16"), last_onnx=built.artifact)
    out = tmp_path / "out"
    out.mkdir()
    deployable = write_deployable(built, out)
    assert deployable.format == "tensorrt_plan"
    assert [p.name for p in deployable.files] == ["model.plan"]
    assert [t.name for t in deployable.signature.inputs] == ["input_0", "input_1"]
    triton = write_triton(built, deployable, out, ExportOptions(max_batch=8))
    config = parse_pbtxt((out / triton["config"]).read_text())
    assert problems(config) == []
    assert config["platform"] == "tensorrt_plan"
    assert config["dynamic_batching"]["preferred_batch_size"] == [1, 2, 8]  # the engine's profiles
    assert config["instance_group"][0]["kind"] == "KIND_GPU"
    plan = out / "triton" / triton["model"] / "1" / "model.plan"
    assert plan.read_bytes() == engine.read_bytes()
    assert any("optimization profiles for batch sizes 1, 2, 8" in note for note in triton["notes"])
