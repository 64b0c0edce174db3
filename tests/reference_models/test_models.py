"""The reference models: shapes, determinism, and the conversions every optimiser relies on.

Only ``tiny`` is run forward (fast on any CPU); larger sizes are only built, to
check that they really are larger.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from reference_models import MODELS, SIZES, ModelSpec, get_model
from reference_models.dcgan import DCGAN_SPEC
from reference_models.unet import UNET_SPEC, timestep_embedding
from reference_models.vae import VAE_SPEC

#: the models that time one forward call: the per-forward checks below are theirs (gpt and ldm have
#: their own test files: a generation and a sampling run are not one forward call)
NAMES = sorted(name for name, spec in MODELS.items() if spec.workload == "forward")
ALL_NAMES = sorted(MODELS)
BATCH = 2


def _spec(name: str) -> ModelSpec:
    return get_model(name)


def _expected_output_shape(name: str, batch: int) -> tuple[int, ...]:
    return {
        "dcgan": (batch, 3, 16, 16),
        "vae": (batch, 3, 32, 32),
        "unet": (batch, 3, 16, 16),
    }[name]


def _run(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.inference_mode():
        return module(*inputs)


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, nn.Module]:
    """One tiny build per model, shared by the read-only tests (building is the slow part)."""
    return {name: _spec(name).build("tiny") for name in NAMES}


def test_registry_holds_the_reference_models() -> None:
    assert set(MODELS) == {"dcgan", "vae", "unet", "gpt", "ldm"}
    assert {name: spec.workload for name, spec in MODELS.items()} == {
        "dcgan": "forward", "vae": "forward", "unet": "forward", "gpt": "generate", "ldm": "sample",
    }  # fmt: skip
    assert MODELS["gpt"].context_length is not None and MODELS["gpt"].context_length("small") == 1024
    assert (DCGAN_SPEC.family, DCGAN_SPEC.item) == ("gan", "image")
    assert (VAE_SPEC.family, VAE_SPEC.item) == ("vae", "image")
    assert (UNET_SPEC.family, UNET_SPEC.item) == ("diffusion", "denoise-step")
    for spec in MODELS.values():
        assert spec.sizes == SIZES
        assert spec.description


@pytest.mark.parametrize("name", ALL_NAMES)
def test_unknown_size_is_a_value_error(name: str) -> None:
    spec = _spec(name)
    with pytest.raises(ValueError, match="no size 'huge'"):
        spec.build("huge")
    with pytest.raises(ValueError, match="no size 'huge'"):
        spec.example_inputs(1, "huge", 0)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_shape_and_values(name: str, tiny_models: dict[str, nn.Module]) -> None:
    module = tiny_models[name]
    assert not module.training and not any(m.training for m in module.modules())
    assert all(p.dtype == torch.float32 for p in module.parameters())
    out = _run(module, _spec(name).example_inputs(BATCH, "tiny", 0))
    assert out.shape == _expected_output_shape(name, BATCH)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Random weights must still give a signal, neither flat nor exploding.
    assert 0.05 < out.std().item() < 10.0


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_dcgan_output_is_not_saturated(size: str) -> None:
    """The calibrated BatchNorm keeps tanh in range: a flat or +-1 image would hide fidelity loss."""
    out = _run(DCGAN_SPEC.build(size), DCGAN_SPEC.example_inputs(4, size, 0))
    assert 0.05 < out.std().item() < 0.9
    assert (out.abs() > 0.99).float().mean().item() < 0.05


@pytest.mark.parametrize("name", NAMES)
def test_two_builds_are_identical(name: str) -> None:
    spec = _spec(name)
    before = torch.get_rng_state()
    a, b = spec.build("tiny"), spec.build("tiny")
    assert torch.equal(before, torch.get_rng_state()), "build must not disturb the caller's RNG"
    assert a is not b
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    inputs = spec.example_inputs(BATCH, "tiny", 3)
    assert torch.equal(_run(a, inputs), _run(b, inputs))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_example_inputs_are_seeded(name: str) -> None:
    spec = _spec(name)
    first = spec.example_inputs(BATCH, "tiny", 0)
    again = spec.example_inputs(BATCH, "tiny", 0)
    other = spec.example_inputs(BATCH, "tiny", 1)
    assert isinstance(first, tuple) and len(first) == len(again) == len(other)
    for t in first:
        assert t.device.type == "cpu" and t.shape[0] == BATCH
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    assert spec.example_inputs(5, "tiny", 0)[0].shape[0] == 5


def test_unet_inputs_are_image_and_int64_timesteps() -> None:
    x, t = UNET_SPEC.example_inputs(64, "tiny", 0)
    assert x.dtype == torch.float32 and x.shape == (64, 3, 16, 16)
    assert t.dtype == torch.int64 and t.shape == (64,)
    assert int(t.min()) >= 0 and int(t.max()) < 1000


def test_unet_depends_on_the_timestep(tiny_models: dict[str, nn.Module]) -> None:
    x, t = UNET_SPEC.example_inputs(BATCH, "tiny", 0)
    module = tiny_models["unet"]
    assert not torch.allclose(_run(module, (x, t)), _run(module, (x, (t + 500) % 1000)))


def test_timestep_embedding_is_float32_sinusoid() -> None:
    emb = timestep_embedding(torch.tensor([0, 999]), 16)
    assert emb.shape == (2, 16) and emb.dtype == torch.float32
    # t = 0: sin terms are 0, cos terms are 1.
    assert torch.equal(emb[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    assert timestep_embedding(torch.tensor([5]), 15).shape == (1, 15)


@pytest.mark.parametrize("name", NAMES)
def test_input_sizes_match_config(name: str) -> None:
    shapes = {size: tuple(_spec(name).example_inputs(1, size, 0)[0].shape) for size in SIZES}
    assert (
        shapes
        == {
            "dcgan": {"tiny": (1, 16, 1, 1), "small": (1, 100, 1, 1), "base": (1, 128, 1, 1)},
            "vae": {"tiny": (1, 4, 4, 4), "small": (1, 4, 16, 16), "base": (1, 4, 32, 32)},
            "unet": {"tiny": (1, 3, 16, 16), "small": (1, 3, 32, 32), "base": (1, 3, 32, 32)},
        }[name]
    )


@pytest.mark.parametrize("name", NAMES)
def test_param_counts_grow_with_size(name: str) -> None:
    counts = [sum(p.numel() for p in _spec(name).build(size).parameters()) for size in SIZES]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts


def test_base_sizes_match_the_published_models() -> None:
    """base VAE is SD's decoder (+ post_quant_conv), base UNet is DDPM's CIFAR-10 network."""
    vae = sum(p.numel() for p in VAE_SPEC.build("base").parameters())
    unet = sum(p.numel() for p in UNET_SPEC.build("base").parameters())
    assert 49_000_000 < vae < 50_000_000
    assert 35_000_000 < unet < 36_500_000


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_matches(name: str, tiny_models: dict[str, nn.Module]) -> None:
    spec = _spec(name)
    inputs = spec.example_inputs(BATCH, "tiny", 0)
    reference = _run(tiny_models[name], inputs)
    module = spec.build("tiny").to(memory_format=torch.channels_last)
    cl_inputs = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
    out = _run(module, cl_inputs)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_forward(name: str, tiny_models: dict[str, nn.Module]) -> None:
    spec = _spec(name)
    inputs = spec.example_inputs(BATCH, "tiny", 0)
    reference = _run(tiny_models[name], inputs)
    module = spec.build("tiny").to(torch.bfloat16)
    # Only floating inputs change dtype; timesteps stay int64.
    bf_inputs = tuple(t.to(torch.bfloat16) if t.is_floating_point() else t for t in inputs)
    out = _run(module, bf_inputs)
    assert out.dtype == torch.bfloat16 and out.shape == reference.shape
    assert torch.isfinite(out).all()
    rel = (out.float() - reference).abs().mean() / reference.abs().mean()
    assert rel.item() < 0.1


@pytest.mark.parametrize("name", NAMES)
def test_fx_symbolic_trace(name: str, tiny_models: dict[str, nn.Module]) -> None:
    module = tiny_models[name]
    inputs = _spec(name).example_inputs(BATCH, "tiny", 0)
    traced = torch.fx.symbolic_trace(module)
    torch.testing.assert_close(_run(traced, inputs), _run(module, inputs))


@pytest.mark.parametrize("name", NAMES)
def test_torch_export(name: str, tiny_models: dict[str, nn.Module]) -> None:
    module = tiny_models[name]
    inputs = _spec(name).example_inputs(BATCH, "tiny", 0)
    exported = torch.export.export(module, inputs)
    torch.testing.assert_close(exported.module()(*inputs), _run(module, inputs))


# torch warns (attributed to the caller, so the torch.* filter misses it) that the
# TorchScript exporter is legacy; using it is the point of this test. F.group_norm's
# batch-size check raises a TracerWarning inside torch, which torch itself silences
# for its own modules but the "error" filter would turn back on.
@pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"
)
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning:torch")
@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_torchscript(name: str, tiny_models: dict[str, nn.Module], tmp_path: Path) -> None:
    module = tiny_models[name]
    inputs = _spec(name).example_inputs(BATCH, "tiny", 0)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=17)
    assert path.stat().st_size > 0
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    (out,) = session.run(None, feeds)
    torch.testing.assert_close(torch.from_numpy(out), _run(module, inputs), rtol=1e-4, atol=1e-4)
