"""bench list's model facts: a forward model's as before, a generate model's and a sample model's their own."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

import bench.harness.plan
from bench.cli import main
from bench.harness.inventory import _output, describe_model
from bench.measure.work import count_flops
from reference_models import MODELS


def test_generate_model_shows_prompt_and_logits_and_two_flops_per_param_per_token() -> None:
    info = describe_model(MODELS["gpt"], "tiny")
    model = MODELS["gpt"].build("tiny")
    params = sum(p.numel() for p in model.parameters())
    assert info.workload == "generate" and info.params == params
    assert info.input_shapes == "prompt [1, 16]"
    assert info.output_shape == f"logits [1, 16, {model.vocab_size}]"
    assert info.gflops_per_item == pytest.approx(2 * params / 1e9)
    assert info.gflops_text() == f"{2 * params / 1e9:.3g}/token (2 x params)"


def test_sample_model_counts_unet_and_vae_apart() -> None:
    info = describe_model(MODELS["ldm"], "tiny")
    pipeline = MODELS["ldm"].build("tiny")
    latents, labels = MODELS["ldm"].example_inputs(1, "tiny", 0)
    assert info.workload == "sample"
    assert info.params == sum(p.numel() for p in pipeline.unet.parameters()) + sum(
        p.numel() for p in pipeline.vae.parameters()
    )
    assert info.input_shapes == f"latents [{', '.join(map(str, pipeline.latent_shape(1)))}]"
    assert info.output_shape == "image [1, 3, 32, 32]"
    # the meta-device count agrees with a real forward of each network
    unet_flops = count_flops(pipeline.unet, (latents, torch.zeros(1, dtype=torch.int64), labels))
    assert info.unet_gflops == pytest.approx(unet_flops / 1e9)
    assert info.vae_gflops == pytest.approx(count_flops(pipeline.vae, (latents,)) / 1e9)
    assert info.gflops_per_item == pytest.approx(info.unet_gflops + info.vae_gflops)
    assert "/UNet call + " in info.gflops_text() and info.gflops_text().endswith(" VAE")


def test_forward_model_is_described_as_before() -> None:
    info = describe_model(MODELS["dcgan"], "tiny")
    assert (info.workload, info.input_shapes, info.output_shape) == ("forward", "1x16x1x1", "1x3x16x16")
    assert info.gflops_per_item > 0 and info.gflops_text() == f"{info.gflops_per_item:.3f}"


class _NeedsValues(nn.Module):
    """A module meta cannot run: its Python reads a tensor's value."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).repeat(1, int(x.abs().sum().item() > -1) + 1)


def test_shapes_come_from_the_module_own_device_where_meta_cannot_run_it() -> None:
    assert _output(_NeedsValues(), (torch.ones(2, 4),)).shape == (2, 6)


def test_list_shows_each_workload_with_its_gflops_label(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = [replace(MODELS[name], sizes=("tiny",)) for name in ("dcgan", "gpt", "ldm")]
    monkeypatch.setattr(bench.harness.plan, "resolve_models", lambda *args, **kwargs: tiny)
    assert main(["list", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "generate",
        "sample",
        "prompt [1, 16]",
        "(2 x params)",
        "/UNet call",
        "image [1, 3, 32, 32]",
    ):
        assert expected in out, expected
