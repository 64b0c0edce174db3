"""torchao passes: int8wo/int8dq quantize Linear weights and stay close to fp32, int4wo says why it cannot run
here, order rules hold at parse time, and the stored size of a quantized weight is what it really stores."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

pytest.importorskip("torchao")

from torch.utils._python_dispatch import is_traceable_wrapper_subclass  # noqa: E402

from bench.core.artifact import TorchArtifact  # noqa: E402
from bench.core.device import Device  # noqa: E402
from bench.core.errors import NotApplicable, PipelineError  # noqa: E402
from optimizers import torchao_passes  # noqa: E402
from optimizers.registry import parse_pipeline  # noqa: E402
from optimizers.torchao_passes import (  # noqa: E402
    Int4WeightOnly,
    Int8DynamicActivation,
    Int8WeightOnly,
    quantized_tensor_bytes,
)
from tests.conftest import pass_context  # noqa: E402

CPU = Device("cpu")


def _mlp(dtype: torch.dtype = torch.float32) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 128), nn.SiLU(), nn.Linear(128, 32)).eval().to(dtype)


def _inputs(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(8, 64, generator=gen).to(dtype),)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(nn.functional.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))


@pytest.mark.parametrize(("text", "precision"), [("int8wo", "int8-wo"), ("int8dq", "int8-dq")])
def test_int8_passes_quantize_every_linear_and_stay_close(text: str, precision: str) -> None:
    module = _mlp()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    inputs = _inputs()
    (step,) = parse_pipeline(text).passes
    art = step.apply(TorchArtifact(module=module), pass_context(inputs))
    assert art.precision == precision and art.input_dtype == torch.float32 and not art.compiled
    layers = [m for m in art.module.modules() if isinstance(m, nn.Linear)]
    assert len(layers) == 2 and all(is_traceable_wrapper_subclass(m.weight) for m in layers)
    # the input artifact's module is untouched: plain float weights, the same values
    assert all(type(p) is nn.Parameter and p.dtype == torch.float32 for p in module.parameters())
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    with torch.inference_mode():
        ref, got = module(*inputs), art.module(*inputs)
    assert got.dtype == torch.float32 and _cosine(got, ref) > 0.99
    assert not torch.equal(got, ref)  # quantized, not a copy
    assert f"torchao {text}" in art.notes[0] and "quantized 2 of 2 nn.Linear layers" in art.notes[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_int8wo_keeps_a_half_precision_model_in_its_dtype(dtype: torch.dtype) -> None:
    cast = "bf16" if dtype == torch.bfloat16 else "fp16"
    module, inputs = _mlp(), _inputs()
    art = TorchArtifact(module=module)
    for step in parse_pipeline(f"{cast}+int8wo").passes:
        art = step.apply(art, pass_context(inputs))
    assert art.precision == "int8-wo" and art.input_dtype == dtype
    with torch.inference_mode():
        got = art.module(inputs[0].to(dtype))
        ref = module(*inputs)
    assert got.dtype == dtype and _cosine(got, ref) > 0.99


def test_tied_and_left_linears_are_counted_in_the_notes() -> None:
    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 64)
            self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
            self.lm_head = nn.Linear(64, 50, bias=False)
            self.lm_head.weight = self.embed.weight

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = self.embed(ids)
            return self.lm_head(self.attn(h, h, h, need_weights=False)[0])

    module = TinyLM().eval()
    ids = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    art = Int8WeightOnly().apply(TorchArtifact(module=module), pass_context((ids,)))
    notes = "; ".join(art.notes)
    assert "quantized 1 of 2 nn.Linear layers" in notes
    assert "left 1 float: attn.out_proj (nn.MultiheadAttention's out_proj)" in notes
    assert "untied 1 shared weight(s) (lm_head.weight was tied to embed.weight)" in notes
    assert is_traceable_wrapper_subclass(art.module.lm_head.weight)
    assert type(art.module.embed.weight) is nn.Parameter  # the embedding keeps its float copy
    assert module.lm_head.weight is module.embed.weight  # the original stays tied
    with torch.inference_mode():
        assert art.module(ids).shape == (2, 5, 50)


def test_a_model_without_linear_layers_is_not_applicable() -> None:
    convs = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    art = TorchArtifact(module=convs)
    for step in (Int8WeightOnly(), Int8DynamicActivation()):
        with pytest.raises(NotApplicable, match="has no nn.Linear"):
            step.apply(art, pass_context((torch.randn(1, 3, 8, 8),)))


def test_int4wo_on_this_machine_runs_or_says_why_in_one_line() -> None:
    step = Int4WeightOnly()
    reason = step.applies_to(CPU)
    if reason is None:  # a machine where torchao's int4 kernels run on CPU
        return
    assert reason and "\n" not in reason and reason.startswith("torchao int4wo does not run on cpu")
    if importlib.util.find_spec("mslk") is None:
        assert "mslk" in reason  # torchao's own words, not a guess
    assert torchao_passes._PROBES[("int4wo", "cpu")] == reason  # probed once, then cached


def test_the_probe_runs_once_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(torchao_passes, "_PROBES", {})
    monkeypatch.setattr(Int8WeightOnly, "_probe", lambda self, device: calls.append(str(device)))
    step = Int8WeightOnly()
    assert step.applies_to(CPU) is None and step.applies_to(CPU) is None
    assert calls == ["cpu"]


def test_without_torchao_the_passes_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    for step in (Int8WeightOnly(), Int8DynamicActivation(), Int4WeightOnly()):
        assert "torchao is not installed" in (step.applies_to(CPU) or "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("compile+int8wo", "int8wo cannot change a module that is already compiled"),
        ("cudagraph+int8dq", "int8dq cannot change a module that is already compiled"),
        ("int8wo+int8dq", "int8dq quantizes float weights and this model is already int8-wo"),
        ("bf16+int4wo+int8wo", "int8wo quantizes float weights and this model is already int4-wo"),
        ("int4wo", r"int4wo needs bf16 weights .* put bf16 first \(bf16\+int4wo\)"),
        ("fp16+int4wo:64", r"put bf16 first \(bf16\+int4wo:64\)"),
        ("int4wo:100", "int4wo group size must be one of 32, 64, 128, 256"),
        ("int4wo:x", "int4wo group size must be one of"),
        ("fp16+sparse24+int8wo", "int8wo cannot quantize 2:4 semi-structured weights"),
    ],
)
def test_impossible_orders_are_refused_at_parse_time(text: str, reason: str) -> None:
    with pytest.raises(PipelineError, match=reason) as info:
        parse_pipeline(text)
    assert "\n" not in str(info.value)


def test_accepted_orders_and_their_precision() -> None:
    assert parse_pipeline("bf16+int8wo").final_state.precision == "int8-wo"
    assert parse_pipeline("fp16+int8dq").final_state.precision == "int8-dq"
    assert parse_pipeline("bf16+int4wo:64").final_state.precision == "int4-wo"
    assert parse_pipeline("bf16+int4wo:64").passes[-1].group_size == 64  # type: ignore[attr-defined]
    assert parse_pipeline("int8wo+compile").final_state.compiled


def test_a_quantized_artifact_is_refused_when_applied_by_hand() -> None:
    art = TorchArtifact(module=_mlp(), precision="int8-wo")
    with pytest.raises(PipelineError, match="already int8-wo: keep one quantization"):
        Int8DynamicActivation().apply(art, pass_context(_inputs()))


def test_quantized_tensor_bytes_counts_int8_data_and_scales_not_the_wrapped_dtype() -> None:
    linear = nn.Linear(256, 256)
    art = Int8WeightOnly().apply(TorchArtifact(module=linear), pass_context((torch.randn(2, 256),)))
    weight = art.module.weight
    assert weight.numel() * weight.element_size() == 4 * 256 * 256  # what numel * element_size says
    assert 256 * 256 < quantized_tensor_bytes(weight) < 70_000  # int8 data + per-row scales
    assert quantized_tensor_bytes(linear.weight) == 4 * 256 * 256  # a plain tensor: numel * element_size


def test_quantizing_leaves_inductor_settings_to_later_compile_cells() -> None:
    """torchao's default config sets process-wide Inductor options: a later fp32 `compile` cell would differ."""
    import torch._inductor.config as inductor_config

    # torch's defaults, set here so an earlier test that changed them cannot hide a change; through the
    # config's own patch(), which restores it properly (monkeypatch's undo left the option deleted, and a
    # later compile test failed on it)
    with inductor_config.patch(coordinate_descent_tuning=False, force_fuse_int_mm_with_mul=False):
        for step in (Int8WeightOnly(), Int8DynamicActivation()):
            step.apply(TorchArtifact(module=_mlp()), pass_context(_inputs()))
        assert (
            not inductor_config.coordinate_descent_tuning and not inductor_config.force_fuse_int_mm_with_mul
        )
