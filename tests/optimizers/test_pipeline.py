"""Pipelines are checked before any model is built: artifact states, typed arguments, Python use."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import reference_models.dcgan
from bench.cli import main
from bench.core.artifact import OnnxArtifact, TorchArtifact
from bench.core.errors import PipelineError
from bench.harness.plan import DEFAULT_PIPELINES
from optimizers import (
    ArtifactState,
    Bf16,
    ChannelsLast,
    Compile,
    CudaGraph,
    Fp16,
    Int8,
    Int8Dynamic,
    Onnx,
    Ort,
    Pipeline,
    Prune,
    Pt2eInt8,
    Sparse24,
    Sparsity,
    TensorRT,
    parse_pipeline,
)
from reference_models import get_model
from tests.conftest import pass_context

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
HAS_TP = importlib.util.find_spec("torch_pruning") is not None

_COMPILED = "cannot change a module that is already compiled"
_NOT_EXPORTED = "onnx cannot export a module that is already compiled"

#: every order that cannot work, and the words its refusal must contain
IMPOSSIBLE: list[tuple[str, str]] = [
    ("compile+bf16", f"bf16 {_COMPILED}"),
    ("compile+fp16", f"fp16 {_COMPILED}"),
    ("cudagraph+bf16", f"bf16 {_COMPILED}"),
    ("compile+channels_last", f"channels_last {_COMPILED}"),
    ("bf16+prune", "prune works on the fp32 model: put prune first"),
    ("fp16+prune", "prune works on the fp32 model: put prune first"),
    ("compile+prune", f"prune {_COMPILED}"),
    ("compile+sparsity", f"sparsity {_COMPILED}"),
    ("onnx+prune", "'prune' needs a torch artifact but onnx gives onnx"),
    ("int8+sparsity", "'sparsity' needs a torch artifact but int8 gives onnx"),
    ("tensorrt+prune", "'prune' needs a torch artifact but tensorrt gives tensorrt"),
    ("sparse24", "sparse24 needs fp16 or bf16 weights: put fp16 or bf16 before it"),
    ("channels_last+sparse24", "sparse24 needs fp16 or bf16 weights"),
    ("compile+sparse24", f"sparse24 {_COMPILED}"),
    ("fp16+sparse24+sparse24", "sparse24 appears twice"),
    ("fp16+sparse24+sparsity", "sparsity cannot change 2:4 semi-structured weights"),
    ("fp16+sparse24+onnx", "onnx cannot export 2:4 semi-structured weights"),
    ("bf16+sparse24+tensorrt", "tensorrt converts to onnx first, and onnx cannot export bf16"),
    ("compile+compile", "compile cannot compile what compile, cudagraph or pt2e-int8 already wrapped"),
    ("cudagraph+compile", "compile cannot compile what"),
    ("compile+cudagraph", "cudagraph cannot capture what compile, cudagraph or pt2e-int8 already wrapped"),
    ("compile:reduce-overhead+cudagraph", "cudagraph cannot capture"),
    ("cudagraph+cudagraph", "cudagraph cannot capture"),
    ("compile+onnx", _NOT_EXPORTED),
    ("cudagraph+onnx", _NOT_EXPORTED),
    ("compile+ort", f"ort converts to onnx first, and {_NOT_EXPORTED}"),
    ("compile+int8", f"int8 converts to onnx first, and {_NOT_EXPORTED}"),
    ("compile+int8-dynamic", f"int8-dynamic converts to onnx first, and {_NOT_EXPORTED}"),
    ("compile+tensorrt", f"tensorrt converts to onnx first, and {_NOT_EXPORTED}"),
    ("bf16+onnx", "onnx cannot export bf16"),
    ("bf16+ort", "ort converts to onnx first, and onnx cannot export bf16"),
    ("bf16+int8", "int8 converts to onnx first, and onnx cannot export bf16"),
    ("bf16+tensorrt:fp16", "onnx cannot export bf16"),
    ("fp16+int8", "int8 quantizes an fp32 model; this one is fp16"),
    ("fp16+onnx+int8-dynamic", "int8-dynamic quantizes an fp32 model; this one is fp16"),
    ("int8+int8", "int8 quantizes an fp32 model; this one is int8"),
    ("int8+int8-dynamic", "int8-dynamic quantizes an fp32 model; this one is int8"),
    ("compile+pt2e-int8", "pt2e-int8 exports and compiles the eager model itself"),
    ("cudagraph+pt2e-int8", "pt2e-int8 exports and compiles the eager model itself"),
    ("bf16+pt2e-int8", "pt2e-int8 quantizes an fp32 model; this one is bf16"),
    ("fp16+pt2e-int8", "pt2e-int8 quantizes an fp32 model; this one is fp16"),
    ("pt2e-int8+compile", "compile cannot compile what"),
    ("pt2e-int8+bf16", f"bf16 {_COMPILED}"),
    ("pt2e-int8+prune", f"prune {_COMPILED}"),
    ("pt2e-int8+int8", _NOT_EXPORTED),
    ("bf16+fp16", "fp16 casts the fp32 model, and this one is already bf16"),
    ("fp16+fp32", "fp32 changes nothing, so the model stays fp16"),
    ("onnx+onnx", "'onnx' needs a torch artifact but onnx gives onnx"),
    ("tensorrt+tensorrt", "'tensorrt' needs a onnx artifact but tensorrt gives tensorrt"),
    ("int8+fp16", "'fp16' needs a torch artifact but int8 gives onnx"),
]

POSSIBLE: list[tuple[str, list[str]]] = [
    ("prune:0.5+int8", ["prune:0.5", "onnx", "int8"]),
    ("prune:0.3+bf16+channels_last+compile", ["prune:0.3", "bf16", "channels_last", "compile"]),
    ("channels_last+prune", ["channels_last", "prune"]),
    ("sparsity:0.3+fp16+sparse24+compile", ["sparsity:0.3", "fp16", "sparse24", "compile"]),
    ("fp16+sparse24", ["fp16", "sparse24"]),
    ("bf16+sparse24+cudagraph", ["bf16", "sparse24", "cudagraph"]),
    ("channels_last+compile", ["channels_last", "compile"]),
    ("bf16+channels_last", ["bf16", "channels_last"]),
    ("channels_last+bf16+compile:max-autotune", ["channels_last", "bf16", "compile:max-autotune"]),
    ("fp16+cudagraph", ["fp16", "cudagraph"]),
    ("fp16+onnx+ort:cuda", ["fp16", "onnx", "ort:cuda"]),
    ("fp16+tensorrt", ["fp16", "onnx", "tensorrt"]),
    ("int8+tensorrt", ["onnx", "int8", "tensorrt"]),
    ("int8+ort:trt", ["onnx", "int8", "ort:trt"]),
    ("ort+int8-dynamic:conv", ["onnx", "ort", "int8-dynamic:conv"]),
    ("prune:0.5+channels_last+pt2e-int8", ["prune:0.5", "channels_last", "pt2e-int8"]),
    ("fp32+bf16", ["fp32", "bf16"]),
]


@pytest.mark.parametrize(("text", "words"), IMPOSSIBLE, ids=[t for t, _ in IMPOSSIBLE])
def test_an_impossible_order_is_refused_when_parsed_with_its_reason(text: str, words: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text)
    message = str(info.value)
    assert words in message
    assert repr(text) in message and "\n" not in message


@pytest.mark.parametrize(("text", "specs"), POSSIBLE, ids=[t for t, _ in POSSIBLE])
def test_a_possible_order_parses_with_its_conversions(text: str, specs: list[str]) -> None:
    pipeline = parse_pipeline(text)
    assert [p.spec for p in pipeline.passes] == specs
    assert pipeline.text == text


def test_every_default_pipeline_is_a_possible_order() -> None:
    for text in DEFAULT_PIPELINES:
        assert parse_pipeline(text).text == text


def test_states_walk_from_the_fp32_model() -> None:
    p = parse_pipeline("prune:0.5+bf16+channels_last+compile")
    assert p.states[-1] == ArtifactState(precision="bf16", compiled=True, channels_last=True)
    assert parse_pipeline("fp16+tensorrt").final_state == ArtifactState(kind="tensorrt", precision="fp16")
    assert parse_pipeline("int8+tensorrt:fp16").final_state.precision == "fp16"
    assert parse_pipeline("fp16+sparse24").final_state.sparse24
    int8 = parse_pipeline("channels_last+int8").final_state
    assert int8 == ArtifactState(kind="onnx", precision="int8")  # torch-only facts end at the export
    assert parse_pipeline("pt2e-int8").final_state == ArtifactState(precision="int8", compiled=True)


def test_an_impossible_order_exits_2_before_any_model_is_built(capsys, tmp_path, monkeypatch) -> None:
    def built(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was built for a pipeline that cannot run")

    monkeypatch.setattr(reference_models.dcgan, "build_seeded", built)
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--models", "dcgan", "--size", "tiny", "--pipelines", "fp32,compile+bf16"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'compile+bf16' cannot run: bf16 cannot change a module that is already compiled" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- applied by hand
def _tiny_inputs() -> tuple[torch.Tensor, ...]:
    return get_model("dcgan").example_inputs(1, "tiny", 0)


def _torch(**fields: object) -> TorchArtifact:
    return TorchArtifact(module=get_model("dcgan").build("tiny"), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "step", "artifact"),
    [
        ("compile+bf16", Bf16(), lambda tmp: _torch(compiled=True)),
        ("compile+channels_last", ChannelsLast(), lambda tmp: _torch(compiled=True)),
        ("compile+compile", Compile(), lambda tmp: _torch(compiled=True)),
        ("compile+cudagraph", CudaGraph(), lambda tmp: _torch(compiled=True)),
        ("bf16+prune", Prune(ratio=0.5), lambda tmp: _torch(precision="bf16", input_dtype=torch.bfloat16)),
        ("sparse24", Sparse24(), lambda tmp: _torch()),
        ("compile+sparsity", Sparsity(), lambda tmp: _torch(compiled=True)),
        ("bf16+onnx", Onnx(), lambda tmp: _torch(precision="bf16", input_dtype=torch.bfloat16)),
        ("compile+onnx", Onnx(), lambda tmp: _torch(compiled=True)),
        ("compile+pt2e-int8", Pt2eInt8(), lambda tmp: _torch(compiled=True)),
        ("fp16+int8", Int8(), lambda tmp: OnnxArtifact(path=tmp / "x.onnx", precision="fp16")),
        ("onnx+prune", Prune(), lambda tmp: OnnxArtifact(path=tmp / "x.onnx")),
        ("fp16+fp32", parse_pipeline("fp32").passes[0], lambda tmp: _torch(precision="fp16")),
    ],
)
def test_a_pass_applied_by_hand_is_refused_for_the_parse_time_reason(text, step, artifact, tmp_path) -> None:
    """One rule, written once: ``apply`` derives the state from the artifact and asks ``refuses``."""
    art = artifact(tmp_path)
    reason = step.refuses(ArtifactState.of(art))
    assert reason is not None
    with pytest.raises(PipelineError) as applied:
        step.apply(art, pass_context(_tiny_inputs(), tmp_path))
    assert str(applied.value) == reason
    if "needs a" not in reason:  # kind mismatches are worded by the parser, with the pass before
        with pytest.raises(PipelineError) as parsed:
            parse_pipeline(text)
        assert str(parsed.value).endswith(reason)


def test_the_state_of_real_artifacts_is_what_the_passes_declare(tmp_path: Path) -> None:
    """``after`` is a promise about ``apply``: checked on the passes that run in a second on CPU."""
    texts = ["fp32", "fp16", "bf16+channels_last", "channels_last+fp16", "sparsity:0.3"]
    if HAS_ONNX:
        texts += ["onnx", "fp16+onnx", "ort:cpu", "channels_last+onnx"]
    if HAS_TP:
        texts += ["prune:0.5+bf16"]
    spec = get_model("dcgan")
    for text in texts:
        pipeline = parse_pipeline(text)
        art = TorchArtifact(module=spec.build("tiny"))
        for step, declared in zip(pipeline.passes, pipeline.states, strict=True):
            art = step.apply(art, pass_context(spec.example_inputs(2, "tiny", 0), tmp_path / text))
            assert ArtifactState.of(art) == declared, (text, step.spec)


# ----------------------------------------------------------------------------- typed arguments
@pytest.mark.parametrize(
    ("step", "spec"),
    [
        (Prune(ratio=0.5), "prune:0.5"),
        (Prune(), "prune"),
        (Sparsity(ratio=0.3), "sparsity:0.3"),
        (Compile(mode="max-autotune"), "compile:max-autotune"),
        (Compile(), "compile"),
        (Int8(method="entropy", batches=16), "int8:entropy:16"),
        (Int8Dynamic(conv=True), "int8-dynamic:conv"),
        (Onnx(exporter="dynamo"), "onnx:dynamo"),
        (Ort(provider="cuda"), "ort:cuda"),
        (TensorRT(mode="fp16"), "tensorrt:fp16"),
        (Fp16(), "fp16"),
    ],
)
def test_python_keywords_and_pipeline_text_are_the_same_pass(step, spec: str) -> None:
    assert step.spec == spec
    parsed = parse_pipeline(spec).passes[-1]
    assert type(parsed) is type(step) and parsed.spec == spec and parsed.arg == step.arg
    assert vars(parsed) == vars(step)  # the same typed values, parsed once


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("compile:max-autotun", "compile mode 'max-autotun' unknown; choose from default, reduce-overhead"),
        ("compile:max-autotun", "; did you mean max-autotune?"),
        (
            "onnx:dynamoo",
            "onnx exporter 'dynamoo' unknown; choose from torchscript, dynamo; did you mean dynamo?",
        ),
        ("ort:cdua", "ort provider 'cdua' unknown; choose from cpu, cuda, trt; did you mean cuda?"),
        ("tensorrt:fp61", "tensorrt mode 'fp61' unknown; choose from fp32, fp16, bf16, int8, best"),
        ("int8:entropi:4", "did you mean entropy?"),
        ("prune:half", "prune ratio must be a number in (0, 1), e.g. prune:0.3 (got 'half')"),
        ("sparsity:1.5", "sparsity ratio must be in (0, 1)"),
        ("channel_last", "unknown pass 'channel_last' in 'channel_last'; known passes: bf16"),
        ("channel_last", "; did you mean channels_last?"),
        ("bf16:fast", "pass 'bf16' takes no argument (got 'fast')"),
    ],
)
def test_bad_arguments_say_what_is_accepted_in_one_line(text: str, words: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Prune(ratio=1.0),
        lambda: Sparsity(ratio=float("nan")),
        lambda: Compile(mode="turbo"),  # type: ignore[arg-type]
        lambda: Int8(batches=0),
        lambda: Int8(method="kl"),  # type: ignore[arg-type]
        lambda: Onnx(exporter="jit"),  # type: ignore[arg-type]
        lambda: Ort(provider="tpu"),
        lambda: TensorRT(mode="fp8"),  # type: ignore[arg-type]
    ],
)
def test_bad_python_values_are_pipeline_errors_too(build) -> None:
    with pytest.raises(PipelineError):
        build()


# ----------------------------------------------------------------------------- Pipeline.of
def test_a_pipeline_built_from_python_gets_its_conversions_and_text() -> None:
    pipeline = Pipeline.of(Prune(ratio=0.5), Int8())
    assert pipeline.text == "prune:0.5+int8"
    assert [p.spec for p in pipeline.passes] == ["prune:0.5", "onnx", "int8"]
    assert pipeline.final_kind == "onnx" and pipeline.final_state.precision == "int8"
    assert [p.spec for p in parse_pipeline(pipeline.text).passes] == [p.spec for p in pipeline.passes]
    trt = Pipeline.of(Fp16(), TensorRT(mode="fp16"))
    assert trt.text == "fp16+tensorrt:fp16" and trt.final_state == ArtifactState("tensorrt", "fp16")


def test_a_pipeline_built_from_python_is_checked_like_text() -> None:
    with pytest.raises(PipelineError) as from_python:
        Pipeline.of(Compile(), Bf16())
    with pytest.raises(PipelineError) as from_text:
        parse_pipeline("compile+bf16")
    assert str(from_python.value) == str(from_text.value)
    with pytest.raises(PipelineError, match="empty pipeline"):
        Pipeline.of()
