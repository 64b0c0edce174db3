"""Pruning passes: structured channel pruning, unstructured sparsity, 2:4 sparsity (CPU, tiny models)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.artifact import TorchArtifact
from bench.core.device import Device
from bench.core.errors import PipelineError
from bench.measure.work import count_flops
from optimizers.base import DEFAULT_RATIO
from optimizers.pruning import Prune, prune_channels, trace_inputs
from optimizers.registry import all_passes, parse_pipeline
from optimizers.sparsity import Sparse24, Sparsity, mask_2_4
from reference_models import get_model
from tests.conftest import pass_context

needs_tp = pytest.mark.skipif(
    importlib.util.find_spec("torch_pruning") is None, reason="torch-pruning not installed"
)
MODELS = ("dcgan", "vae", "unet")


_ctx = pass_context


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _apply(text: str, model: str) -> tuple[nn.Module, TorchArtifact, tuple[torch.Tensor, ...]]:
    spec = get_model(model)
    module = spec.build("tiny")
    inputs = spec.example_inputs(2, "tiny", 0)
    art = TorchArtifact(module=module)
    for step in parse_pipeline(text).passes:
        art = step.apply(art, _ctx(inputs))
    assert isinstance(art, TorchArtifact)
    return module, art, inputs


# ----------------------------------------------------------------------------- prune
@needs_tp
@pytest.mark.parametrize("model", MODELS)
def test_prune_removes_the_requested_share_and_keeps_the_output_shape(model: str) -> None:
    spec = get_model(model)
    module = spec.build("tiny")
    inputs = spec.example_inputs(2, "tiny", 0)
    with torch.inference_mode():
        expected_shape = module(*inputs).shape
    report = prune_channels(module, trace_inputs(inputs, torch.device("cpu")), 0.5)
    # the ratio as applied to every group that was pruned
    assert report.share_of_pruned_groups == pytest.approx(0.5, abs=0.05)
    # and overall: groups left whole for GroupNorm validity (tiny UNet's skip joins) cost a little
    assert report.share == pytest.approx(0.5, abs=0.06)
    assert report.params_after < report.params_before
    with torch.inference_mode():
        assert module(*inputs).shape == expected_shape


@needs_tp
@pytest.mark.parametrize("model", MODELS)
def test_prune_pass_leaves_its_input_alone_and_cuts_params_and_flops(model: str) -> None:
    spec = get_model(model)
    original = spec.build("tiny")
    weight = next(p for p in original.parameters() if p.dim() > 1)
    before = (_n_params(original), weight.detach().clone())
    original_flops = count_flops(original, spec.example_inputs(2, "tiny", 0))

    art = TorchArtifact(module=original)
    inputs = spec.example_inputs(2, "tiny", 0)
    pruned = Prune(ratio=0.5).apply(art, _ctx(inputs))

    assert isinstance(pruned, TorchArtifact) and pruned.module is not original
    assert _n_params(original) == before[0]
    assert torch.equal(weight, before[1]) and weight.requires_grad  # untouched, flags included
    assert art.notes == ()
    assert _n_params(pruned.module) < before[0]
    assert count_flops(pruned.module, inputs) < original_flops
    assert any(note.startswith("pruned ") and "params" in note for note in pruned.notes)
    assert all(p.requires_grad for p in pruned.module.parameters())  # flags as the input had them


@needs_tp
@pytest.mark.parametrize("model", ["vae", "unet"])
def test_prune_keeps_group_norms_valid_and_attention_consistent(model: str) -> None:
    _, art, inputs = _apply("prune:0.5", model)
    for m in art.module.modules():
        if isinstance(m, nn.GroupNorm):
            assert m.num_channels % m.num_groups == 0, m
        if hasattr(m, "proj_out") and hasattr(m, "norm"):  # attention block: one width inside and out
            projs = [m.qkv] if hasattr(m, "qkv") else [m.q, m.k, m.v]
            width = m.norm.num_channels
            assert m.proj_out.out_channels == m.proj_out.in_channels == width
            assert sum(p.out_channels for p in projs) == 3 * width
            assert all(p.in_channels == width for p in projs)
    with torch.inference_mode():
        art.module(*inputs)


@needs_tp
def test_prune_leaves_attention_of_unknown_layout_whole() -> None:
    class Attention(nn.Module):  # diffusers-style names, token-major linear projections
        def __init__(self, c: int) -> None:
            super().__init__()
            self.group_norm = nn.GroupNorm(4, c)
            self.to_q, self.to_k, self.to_v, self.to_out = (nn.Linear(c, c) for _ in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, c, h, w = x.shape
            t = self.group_norm(x).flatten(2).transpose(1, 2)
            a = torch.softmax(self.to_q(t) @ self.to_k(t).transpose(1, 2) / c**0.5, dim=-1) @ self.to_v(t)
            return x + self.to_out(a).transpose(1, 2).reshape(b, c, h, w)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
            self.attn = Attention(64)
            self.c3, self.c4 = nn.Conv2d(64, 32, 3, padding=1), nn.Conv2d(32, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.c2(F.relu(self.c1(x))))
            return self.c4(F.relu(self.c3(self.attn(h))))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(1, 3, 8, 8)
    report = prune_channels(net, (x,), 0.5)
    assert report.opaque_attention == ("attn",)
    assert net.attn.to_q.in_features == net.attn.to_out.out_features == 64  # its residual width stays whole
    assert net.c1.out_channels == 16 and net.c3.out_channels == 16  # the rest is pruned
    assert net(x).shape == (1, 3, 8, 8)


@needs_tp
def test_prune_refuses_non_fp32_and_compiled_artifacts() -> None:
    spec = get_model("dcgan")
    inputs = spec.example_inputs(2, "tiny", 0)
    bf16 = TorchArtifact(
        module=spec.build("tiny").to(torch.bfloat16), precision="bf16", input_dtype=torch.bfloat16
    )
    with pytest.raises(PipelineError, match="put prune first"):
        Prune(ratio=0.5).apply(bf16, _ctx(inputs))
    compiled = TorchArtifact(module=spec.build("tiny"), compiled=True)
    with pytest.raises(PipelineError, match="already compiled"):
        Prune(ratio=0.5).apply(compiled, _ctx(inputs))


def test_prune_reports_a_missing_torch_pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch_pruning" else real(name, *a)
    )
    reason = Prune(ratio=0.5).available()
    assert reason is not None and "torch-pruning" in reason
    assert Prune(ratio=0.5).applies_to(Device("cpu")) == reason


# ----------------------------------------------------------------------------- arguments and pipelines
@pytest.mark.parametrize("text", ["prune:1.5", "prune:abc", "prune:0", "prune:1", "prune:nan", "prune:-0.2"])
def test_bad_prune_ratios_are_pipeline_errors(text: str) -> None:
    with pytest.raises(PipelineError, match="prune ratio"):
        parse_pipeline(text)


@pytest.mark.parametrize("text", ["sparsity:2", "sparsity:x", "sparse24:0.5"])
def test_bad_sparsity_arguments_are_pipeline_errors(text: str) -> None:
    with pytest.raises(PipelineError):
        parse_pipeline(text)


def test_ratios_default_to_one_half() -> None:
    assert Prune().ratio == Sparsity().ratio == DEFAULT_RATIO == 0.5
    assert Prune().spec == "prune" and Prune(ratio=0.3).spec == "prune:0.3"
    assert Prune.from_arg(".30").ratio == 0.3 and Prune.from_arg(".30").spec == "prune:0.3"  # canonical text
    with pytest.raises(PipelineError, match=r"prune ratio must be in \(0, 1\)"):
        Prune(ratio=1.5)  # typed arguments are checked where Python users give them too


def test_prune_pipelines_parse() -> None:
    assert [p.spec for p in parse_pipeline("prune:0.3+bf16").passes] == ["prune:0.3", "bf16"]
    if "onnx" not in all_passes():
        pytest.skip("the onnx pass is not registered yet")
    assert [p.spec for p in parse_pipeline("prune:0.5+onnx").passes] == ["prune:0.5", "onnx"]


# ----------------------------------------------------------------------------- sparsity
@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_sparsity_reaches_the_requested_zero_fraction(ratio: float) -> None:
    original, art, inputs = _apply(f"sparsity:{ratio}", "unet")
    weights = [m.weight for m in art.module.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert zeros / total == pytest.approx(ratio, abs=0.01)
    assert not any(
        name.endswith(("_orig", "_mask")) for name, _ in art.module.named_parameters()
    )  # made permanent
    assert all(int((m.weight == 0).sum()) == 0 for m in original.modules() if isinstance(m, nn.Conv2d))
    assert _n_params(art.module) == _n_params(original)  # dense: nothing removed
    assert any("weights are zero" in note and "no speedup" in note for note in art.notes)
    with torch.inference_mode():
        assert art.module(*inputs).shape == original(*inputs).shape


# ----------------------------------------------------------------------------- 2:4
def test_sparse24_does_not_apply_on_cpu() -> None:
    reason = Sparse24().applies_to(Device("cpu"))
    assert reason == "2:4 semi-structured sparse kernels need an NVIDIA GPU with compute capability >= 8.0"


def test_sparse24_refuses_fp32_weights() -> None:
    art = TorchArtifact(module=get_model("dcgan").build("tiny"))
    with pytest.raises(PipelineError, match="fp16 or bf16"):
        Sparse24().apply(art, _ctx(get_model("dcgan").example_inputs(1, "tiny", 0)))


def test_mask_2_4_keeps_the_two_largest_of_every_four() -> None:
    w = torch.tensor([[1.0, -4.0, 3.0, 0.5, 0.0, 0.1, -0.2, 0.3]])
    assert mask_2_4(w).tolist() == [[False, True, True, False, False, False, True, True]]
    big = torch.randn(64, 128)
    assert mask_2_4(big).reshape(64, 32, 4).sum(-1).eq(2).all()


# ----------------------------------------------------------------------------- end to end
@needs_tp
def test_pruned_unet_row_has_fewer_params_and_flops(tmp_path: Path) -> None:
    from bench.harness.config import RunConfig
    from bench.harness.runner import Runner, plan_cells
    from bench.results.writer import ResultWriter

    config = RunConfig(
        models=("unet",),
        size="tiny",
        pipelines=("fp32", "prune:0.5"),
        batch_sizes=(2,),
        time_budget_s=0.2,
        min_samples=3,
    )
    writer = ResultWriter(tmp_path)
    runner = Runner(config=config, device=Device("cpu"), writer=writer, run_id="t")
    cells = plan_cells([get_model("unet")], "tiny", [parse_pipeline(p) for p in config.pipelines], (2,))
    runner.run(cells)
    frame = writer.frame().set_index("pipeline")
    assert list(frame["status"]) == ["ok", "ok"], frame["reason"].tolist()
    fp32, pruned = frame.loc["fp32"], frame.loc["prune:0.5"]
    assert pruned["params"] < fp32["params"]
    assert pruned["gflops_per_item"] < fp32["gflops_per_item"]
    assert "pruned " in pruned["notes"]
