"""OpenVINO passes: conversion from torch and from ONNX, bf16 inference, NNCF int8, hints, order rules."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import torch

from bench.core.artifact import OpenVinoArtifact, TorchArtifact
from bench.core.device import Device
from bench.core.errors import NotApplicable, PipelineError
from bench.measure.fidelity import compare_outputs
from bench.runtimes import load, runtime_notes
from optimizers.openvino_passes import OpenVino, OvInt8, performance_hint
from optimizers.registry import parse_pipeline
from reference_models import get_model
from tests.conftest import pass_context

CPU = Device("cpu")
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="openvino and nncf are not installed (pip install -e '.[openvino]')",
)


def run_pipeline(
    pipeline: str, model: str, tmp_path: Path, batch: int = 2, scenario: str = "single-stream"
) -> tuple[OpenVinoArtifact, float, tuple[str, ...]]:
    """A pipeline applied to a tiny model and run once on its runtime: the artifact, its PSNR vs fp32 eager
    and what the runtime noted."""
    spec = get_model(model)
    module = spec.build("tiny")
    inputs = spec.example_inputs(batch, "tiny", 0)
    ctx = dataclasses.replace(
        pass_context(
            inputs,
            tmp_path,
            calibration=lambda n: (spec.example_inputs(batch, "tiny", 1000 + i) for i in range(n)),
        ),
        scenario=scenario,
    )
    with torch.inference_mode():
        ref = module(*inputs)
    art = TorchArtifact(module=module)
    for step in parse_pipeline(pipeline).passes:
        art = step.apply(art, ctx)
    assert isinstance(art, OpenVinoArtifact)
    runtime = load(art, CPU)
    out = runtime.to_torch(runtime.run(runtime.prepare(inputs)))
    assert out.shape == ref.shape
    return art, compare_outputs(ref, out).psnr_db, runtime_notes(runtime)


def test_arguments_parse_to_a_canonical_spec() -> None:
    assert parse_pipeline("openvino").passes[-1].spec == "openvino"
    assert parse_pipeline("openvino:bf16").passes[-1].spec == "openvino:bf16"
    step = parse_pipeline("ov-int8:ignore=ends:16:bias=full:preset=mixed").passes[-1]
    assert isinstance(step, OvInt8)
    assert (step.batches, step.bias, step.preset, step.ignore) == (16, "full", "mixed", "ends")
    assert step.spec == "ov-int8:16:bias=full:preset=mixed:ignore=ends"
    assert [p.name for p in parse_pipeline("ov-int8").passes] == ["openvino", "ov-int8"]  # converts first


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("openvino:fp16", "precision 'fp16' unknown"),
        ("ov-int8:0", "batch count must be an integer in 1..1024"),
        ("ov-int8:many", "argument 'many' not understood"),
        ("ov-int8:bias=slow", "bias 'slow' unknown"),
        ("ov-int8:ignore=Conv", "ignore 'Conv' unknown"),
        ("ov-int8:level=2", "option 'level' unknown"),
    ],
)
def test_bad_arguments_are_one_line_errors(text: str, expected: str) -> None:
    with pytest.raises(PipelineError, match=expected):
        parse_pipeline(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ov-int8+ort", "needs a onnx artifact but ov-int8 gives openvino"),
        ("openvino+int8", "needs a onnx artifact but openvino gives openvino"),
        ("openvino+compile", "needs a torch artifact but openvino gives openvino"),
        ("compile+openvino", "openvino converts the eager torch model"),
        ("bf16+openvino", "drop the cast and ask for openvino:bf16"),
        ("openvino:bf16+ov-int8", "put openvino:bf16 after ov-int8"),
        ("openvino+openvino:bf16", "already an OpenVINO one"),
        ("ov-int8+ov-int8", "quantizes the fp32 model; this one is int8"),
        ("fp16+sparse24+openvino", "cannot convert 2:4 semi-structured weights"),
    ],
)
def test_runtimes_mixed_in_an_impossible_order_are_refused_at_parse_time(text: str, expected: str) -> None:
    with pytest.raises(PipelineError, match=expected):
        parse_pipeline(text)


def test_states_say_what_each_pipeline_computes_in() -> None:
    assert parse_pipeline("openvino").final_state.precision == "fp32"
    assert parse_pipeline("openvino:bf16").final_state.precision == "bf16"
    assert parse_pipeline("ov-int8+openvino:bf16").final_state.precision == "int8"
    assert parse_pipeline("int8+openvino").final_state.precision == "int8"
    assert {parse_pipeline(t).final_kind for t in ("openvino", "ov-int8", "onnx+openvino")} == {"openvino"}


def test_skipped_with_a_reason_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a)
    )
    assert "nncf is not installed" in (OvInt8().applies_to(CPU) or "")
    assert OpenVino().applies_to(CPU) is None or "openvino is not installed" in OpenVino().applies_to(CPU)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    for step in (OpenVino(), OpenVino(precision="bf16"), OvInt8()):
        assert "openvino is not installed" in (step.applies_to(CPU) or "")
        assert 'pip install -e ".[openvino]"' in (step.applies_to(CPU) or "")


def test_runs_on_the_cpu_plugin_only() -> None:
    assert "CPU plugin only" in (OpenVino().applies_to(Device("cuda", 0)) or "")


def test_bf16_leaves_the_defaults_where_the_cpu_emulates_it() -> None:
    from bench.core.device import emulated_dtype

    assert OpenVino(precision="bf16").default_exclusion(CPU) == emulated_dtype(CPU, "bf16")
    assert OpenVino().default_exclusion(CPU) is None


def test_hint_follows_the_scenario() -> None:
    assert performance_hint("single-stream") == "LATENCY"
    assert performance_hint("server") == "LATENCY"
    assert performance_hint("offline") == "THROUGHPUT"


@needs_openvino
@pytest.mark.parametrize("model", ["dcgan", "vae", "unet"])
def test_openvino_fp32_matches_eager(model: str, tmp_path: Path) -> None:
    art, psnr, notes = run_pipeline("openvino", model, tmp_path)
    assert art.source == "torch" and art.inference_precision == "f32" and art.precision == "fp32"
    assert psnr >= 60, f"{model}: OpenVINO fp32 at {psnr:.1f} dB"
    assert art.stored_bytes() > 0 and art.weights_path.is_file()
    (note,) = notes
    assert "hint=LATENCY" in note and "streams=1" in note and "inference_precision=f32" in note
    assert f"threads={torch.get_num_threads()}" in note


@needs_openvino
def test_openvino_bf16_is_close_to_fp32_or_not_applicable_without_native_bf16(tmp_path: Path) -> None:
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(NotApplicable, match="no native bf16"):
            run_pipeline("openvino:bf16", "unet", tmp_path)
        return
    art, psnr, notes = run_pipeline("openvino:bf16", "unet", tmp_path)
    assert art.precision == "bf16" and art.inference_precision == "bf16"
    assert psnr >= 30, f"OpenVINO bf16 at {psnr:.1f} dB"
    assert "inference_precision=bf16" in notes[0] and re.search(r"Convolution=bf16:\d+", notes[0])


@needs_openvino
def test_ov_int8_quantizes_the_unet_within_30_db(tmp_path: Path) -> None:
    art, psnr, notes = run_pipeline("ov-int8", "unet", tmp_path)
    assert art.precision == "int8"
    assert re.search(r"executed .*Convolution=[^ ]*[iu]8:\d+", notes[0]), (
        notes
    )  # the plugin runs them in int8
    assert psnr >= 30, f"ov-int8 at {psnr:.1f} dB"
    note = next(n for n in art.notes if n.startswith("nncf"))
    done, total = (int(x) for x in note.split("Convolution=")[1].split()[0].split("/"))
    assert total > 0 and done >= total // 2, note  # really quantized, not a float model renamed
    import openvino as ov

    model = ov.Core().read_model(str(art.path))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())


@needs_openvino
def test_ov_int8_ignore_ends_keeps_the_first_and_last_convolution_in_float(tmp_path: Path) -> None:
    plain, _, _ = run_pipeline("ov-int8", "vae", tmp_path / "plain")
    kept, psnr, _ = run_pipeline("ov-int8:4:ignore=ends", "vae", tmp_path / "kept")

    def quantized(art: OpenVinoArtifact) -> int:
        note = next(n for n in art.notes if n.startswith("nncf"))
        return int(note.split("Convolution=")[1].split("/")[0])

    assert quantized(kept) == quantized(plain) - 2
    assert psnr >= 30


@needs_openvino
def test_openvino_runs_onnxruntimes_int8_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    art, psnr, _ = run_pipeline("int8+openvino", "unet", tmp_path)
    assert art.source == "onnx" and art.precision == "int8"
    assert psnr >= 30


@needs_openvino
@pytest.mark.parametrize("batch", [4, 3])
def test_offline_uses_the_throughput_hint_and_says_how_the_batch_ran(batch: int, tmp_path: Path) -> None:
    art, psnr, notes = run_pipeline("openvino", "unet", tmp_path, batch=batch, scenario="offline")
    assert art.performance_hint == "THROUGHPUT"
    assert psnr >= 60  # the parts of a split batch come back whole and in order
    requests = int(re.search(r"requests=(\d+)", notes[0]).group(1))
    streams = int(re.search(r"streams=(\d+)", notes[0]).group(1))
    if notes[0].startswith("openvino hint=THROUGHPUT "):  # split: one request per stream
        assert requests == streams > 1 and batch % requests == 0
    else:  # did not split: one request on one stream, and the note says why
        assert "THROUGHPUT->LATENCY" in notes[0] and requests == streams == 1


@needs_openvino
def test_a_new_batch_size_compiles_its_own_model(tmp_path: Path) -> None:
    spec = get_model("dcgan")
    art, _, notes = run_pipeline("openvino", "dcgan", tmp_path, batch=2)
    assert re.search(r"executed Deconvolution=f32:\d+$", notes[0]), notes
    runtime = load(art, CPU)
    for batch in (1, 3):
        inputs = spec.example_inputs(batch, "tiny", 0)
        assert runtime.to_torch(runtime.run(runtime.prepare(inputs))).shape[0] == batch
