"""The torch passes: what each changes, and that none mutates its input."""

from __future__ import annotations

import re

import pytest
import torch

from bench.core.artifact import TorchArtifact
from bench.core.device import Device
from bench.core.errors import PipelineError
from optimizers.registry import parse_pipeline
from optimizers.torch_passes import Bf16, ChannelsLast, Fp16
from reference_models import get_model
from tests.conftest import pass_context

_ctx = pass_context


def _apply(text: str, spec_name: str = "dcgan"):
    spec = get_model(spec_name)
    module = spec.build("tiny")
    inputs = spec.example_inputs(2, "tiny", 0)
    art = TorchArtifact(module=module)
    for step in parse_pipeline(text).passes:
        art = step.apply(art, _ctx(inputs))
    return module, art, inputs


def test_bf16_casts_weights_and_inputs_without_touching_the_original() -> None:
    original, art, _ = _apply("bf16")
    assert all(p.dtype == torch.bfloat16 for p in art.module.parameters())
    assert all(p.dtype == torch.float32 for p in original.parameters())
    assert art.precision == "bf16" and art.input_dtype == torch.bfloat16


def test_channels_last_converts_conv_weights() -> None:
    original, art, _ = _apply("channels_last", "unet")
    conv = next(m for m in art.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert art.channels_last
    orig_conv = next(m for m in original.modules() if isinstance(m, torch.nn.Conv2d))
    assert orig_conv.weight.is_contiguous()


def test_cast_of_a_compiled_module_is_refused_when_applied_by_hand() -> None:
    compiled = TorchArtifact(module=get_model("dcgan").build("tiny"), compiled=True)
    for step in (Bf16(), Fp16(), ChannelsLast()):
        with pytest.raises(
            PipelineError, match=f"{step.name} cannot change a module that is already compiled"
        ):
            step.apply(compiled, _ctx(get_model("dcgan").example_inputs(1, "tiny", 0)))


@pytest.mark.slow
def test_compile_matches_eager_on_tiny_unet() -> None:
    original, art, inputs = _apply("compile", "unet")
    assert art.compiled
    with torch.inference_mode():
        expected = original(*inputs)
        got = art.module(*inputs)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_compile_freeze_folds_the_weights_and_matches_eager() -> None:
    """Frozen, the weights are constants of the generated code (``_frozen_param``), no longer its inputs
    (plain compile passes all 128 parameters of the UNet tiny in): the check that freezing took effect,
    which torch.compile(options={"freezing": True}) did not."""
    from torch._inductor.utils import run_and_get_code

    def graph_inputs(code: list[str]) -> int:
        return len(set(re.findall(r"\barg\d+_1\b", "".join(code))))

    (original, art, inputs), frozen_code = run_and_get_code(lambda: _apply("compile:freeze", "unet"))
    _, plain_code = run_and_get_code(lambda: _apply("compile", "unet"))
    assert art.compiled and "compile mode=freeze" in art.notes
    assert "_frozen_param" in "".join(frozen_code) and "_frozen_param" not in "".join(plain_code)
    assert graph_inputs(frozen_code) < graph_inputs(plain_code) // 4
    with torch.inference_mode():
        torch.testing.assert_close(art.module(*inputs), original(*inputs), rtol=1e-4, atol=1e-4)
    torch.compiler.reset()


def test_freeze_modes_are_inductor_options_and_autotune_stays_out_of_cpu_defaults() -> None:
    assert parse_pipeline("compile:freeze").passes[0].default_exclusion(Device("cpu")) is None
    assert "ask for it explicitly" in parse_pipeline("compile:freeze-autotune").passes[0].default_exclusion(
        Device("cpu")
    )
    with pytest.raises(PipelineError, match="mode 'freezing' unknown.*did you mean"):
        parse_pipeline("compile:freezing")


def test_each_compile_cell_gets_a_static_graph_whatever_ran_before() -> None:
    """Without a reset, Dynamo's per-code-object state makes the second batch size compile a
    dynamic-batch graph (a different artifact from what a fresh process times)."""
    spec = get_model("dcgan")
    step = parse_pipeline("compile").passes[0]
    step.apply(TorchArtifact(module=spec.build("tiny")), pass_context(spec.example_inputs(1, "tiny", 0)))
    art = step.apply(
        TorchArtifact(module=spec.build("tiny")), pass_context(spec.example_inputs(8, "tiny", 0))
    )
    same_shape, other_batch = spec.example_inputs(8, "tiny", 1), spec.example_inputs(5, "tiny", 0)
    # the config's own patch(): monkeypatch's undo leaves a torch config option deleted, and a later
    # compile (tests/reference_models/test_gpt.py) then fails reading it
    with torch._dynamo.config.patch(error_on_recompile=True), torch.inference_mode():
        art.module(*same_shape)  # the compiled shape: no recompile
        with pytest.raises(Exception, match="[Rr]ecompil"):
            art.module(*other_batch)  # a static graph: another batch size recompiles
    torch.compiler.reset()


def test_cudagraph_is_skipped_on_cpu_with_a_reason() -> None:
    step = parse_pipeline("cudagraph").passes[0]
    assert step.applies_to(Device("cpu")) == "CUDA graphs need an NVIDIA GPU"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_cudagraph_replay_matches_eager_on_gpu() -> None:  # pragma: no cover - GPU only
    spec = get_model("unet")
    module = spec.build("tiny").cuda()
    inputs = tuple(t.cuda() for t in spec.example_inputs(2, "tiny", 0))
    ctx = pass_context(inputs, device=Device("cuda", 0))
    art = parse_pipeline("cudagraph").passes[0].apply(TorchArtifact(module=module), ctx)
    with torch.inference_mode():
        torch.testing.assert_close(art.module(*inputs), module(*inputs), rtol=1e-4, atol=1e-4)
