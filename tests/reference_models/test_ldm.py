"""The ``ldm`` reference model: its configs, its two networks, and a whole (short) sampling run on CPU.

Only ``tiny`` runs; ``small`` and ``base`` are only built. Full-graph
torch.compile is marked slow (Dynamo's first compile takes seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reference_models.ldm import LDM_SPEC, ClassConditionalUNet, LatentDiffusion, LDMConfig
from reference_models.samplers import SAMPLERS, make_sampler, sample
from reference_models.unet import UNetConfig
from reference_models.vae import VAEDecoder

BATCH = 2


@pytest.fixture(scope="module")
def tiny() -> LatentDiffusion:
    model = LDM_SPEC.build("tiny")
    assert isinstance(model, LatentDiffusion)
    return model


def _unet_inputs(batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    noise, labels = LDM_SPEC.example_inputs(batch, "tiny", 0)
    return noise, torch.tensor([999, 10][:batch] + [500] * max(0, batch - 2)), labels


def test_spec_is_a_sample_workload() -> None:
    assert (LDM_SPEC.name, LDM_SPEC.family, LDM_SPEC.item, LDM_SPEC.workload) == (
        "ldm",
        "diffusion",
        "image",
        "sample",
    )
    assert LDM_SPEC.description
    with pytest.raises(ValueError, match="no size 'huge'"):
        LDM_SPEC.build("huge")
    with pytest.raises(ValueError, match="no size 'huge'"):
        LDM_SPEC.example_inputs(1, "huge", 0)


def test_configs_follow_the_vae_latents() -> None:
    sides = {size: (c.unet.image_size, c.vae.image_size) for size, c in LatentDiffusion.CONFIGS.items()}
    assert sides == {"tiny": (4, 32), "small": (16, 128), "base": (32, 256)}
    for size, config in LatentDiffusion.CONFIGS.items():
        assert config.vae == VAEDecoder.CONFIGS[size]
        assert config.unet.in_channels == 4
        assert (config.num_classes, config.scale_factor, config.num_train_timesteps) == (1000, 0.18215, 1000)
    assert LatentDiffusion.CONFIGS["tiny"].unet.attn_resolutions == (2,)
    assert LatentDiffusion.CONFIGS["small"].unet.attn_resolutions == (8,)
    assert LatentDiffusion.CONFIGS["base"].unet.attn_resolutions == (16,)


def test_config_rejects_a_unet_that_does_not_fit_the_vae() -> None:
    vae = VAEDecoder.CONFIGS["tiny"]
    unet = LatentDiffusion.CONFIGS["tiny"].unet
    wrong_side = UNetConfig(
        ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), image_size=8, in_channels=4
    )
    with pytest.raises(ValueError, match="UNet side 8 is not the VAE latent side 4"):
        LDMConfig(unet=wrong_side, vae=vae)
    wrong_channels = UNetConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), image_size=4)
    with pytest.raises(ValueError, match="UNet has 3 channels but the VAE decodes 4"):
        LDMConfig(unet=wrong_channels, vae=vae)
    with pytest.raises(ValueError, match="beta_start < beta_end"):
        LDMConfig(unet=unet, vae=vae, beta_start=0.02, beta_end=0.01)


def test_schedule_is_scaled_linear_in_float64(tiny: LatentDiffusion) -> None:
    schedule = tiny.alphas_cumprod()
    assert schedule.dtype == torch.float64 and schedule.shape == (1000,)
    assert float(schedule[0]) == pytest.approx(1 - 0.00085, rel=1e-12)
    betas = 1 - schedule[1:] / schedule[:-1]
    assert float(betas[-1]) == pytest.approx(0.012, rel=1e-9)
    assert bool((schedule[1:] < schedule[:-1]).all())
    # scaled_linear: sqrt(beta) is linear in t.
    root = betas.sqrt()
    torch.testing.assert_close(
        root[1:] - root[:-1],
        torch.full((998,), float(root[1] - root[0]), dtype=torch.float64),
        rtol=1e-6,
        atol=0,
    )


def test_two_builds_are_identical_and_leave_the_rng_alone() -> None:
    before = torch.get_rng_state()
    a, b = LDM_SPEC.build("tiny"), LDM_SPEC.build("tiny")
    assert torch.equal(before, torch.get_rng_state())
    assert a is not b and not a.training
    sa, sb = a.state_dict(), b.state_dict()
    assert (
        sa.keys() == sb.keys()
        and any(k.startswith("unet.") for k in sa)
        and any(k.startswith("vae.") for k in sa)
    )
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(p.dtype == torch.float32 for p in a.parameters())


def test_example_inputs_are_seeded_noise_and_labels(tiny: LatentDiffusion) -> None:
    noise, labels = LDM_SPEC.example_inputs(64, "tiny", 0)
    assert noise.shape == tiny.latent_shape(64) == (64, 4, 4, 4) and noise.dtype == torch.float32
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < 1000 and len(set(labels.tolist())) > 10
    again = LDM_SPEC.example_inputs(64, "tiny", 0)
    other = LDM_SPEC.example_inputs(64, "tiny", 1)
    assert torch.equal(noise, again[0]) and torch.equal(labels, again[1])
    assert not torch.equal(noise, other[0])
    assert LDM_SPEC.example_inputs(1, "small", 0)[0].shape == (1, 4, 16, 16)
    assert LDM_SPEC.example_inputs(1, "base", 0)[0].shape == (1, 4, 32, 32)


def test_unet_and_vae_shapes(tiny: LatentDiffusion) -> None:
    assert isinstance(tiny.unet, ClassConditionalUNet) and isinstance(tiny.vae, VAEDecoder)
    assert tiny.null_class == 1000
    assert tiny.unet.class_embed.num_embeddings == 1001
    assert tiny.unet.class_embed.embedding_dim == tiny.config.unet.temb_channels
    noise, t, labels = _unet_inputs()
    with torch.inference_mode():
        eps = tiny.unet(noise, t, labels)
        image = tiny.vae(noise)
    assert eps.shape == noise.shape and eps.dtype == torch.float32
    assert 0.05 < eps.std().item() < 10.0
    assert image.shape == (BATCH, 3, 32, 32)


def test_unet_depends_on_class_and_timestep(tiny: LatentDiffusion) -> None:
    noise, t, labels = _unet_inputs()
    null = torch.full_like(labels, tiny.null_class)
    with torch.inference_mode():
        eps = tiny.unet(noise, t, labels)
        assert not torch.allclose(eps, tiny.unet(noise, t, null))
        assert not torch.allclose(eps, tiny.unet(noise, (t + 300) % 1000, labels))


def test_small_builds_with_its_shapes() -> None:
    model = LDM_SPEC.build("small")
    assert model.latent_shape(3) == (3, 4, 16, 16)
    assert model.config.vae.image_size == 128


def test_forward_says_to_use_a_sampler(tiny: LatentDiffusion) -> None:
    noise, labels = LDM_SPEC.example_inputs(BATCH, "tiny", 0)
    with pytest.raises(
        RuntimeError, match="sampling pipeline, not one network: run it with the 'sample' workload"
    ):
        tiny(noise, labels)


@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_sample_end_to_end_is_finite_and_deterministic(tiny: LatentDiffusion, sampler_name: str) -> None:
    noise, labels = LDM_SPEC.example_inputs(BATCH, "tiny", 0)

    def run(guidance: float) -> torch.Tensor:
        sampler = make_sampler(sampler_name, tiny.alphas_cumprod(), 3)
        return sample(
            tiny.unet, tiny.vae, noise, labels, sampler, guidance, tiny.null_class, tiny.config.scale_factor
        )

    image = run(7.5)
    assert image.shape == (BATCH, 3, 32, 32) and image.dtype == torch.float32
    assert torch.isfinite(image).all() and image.std().item() > 0.01
    assert torch.equal(image, run(7.5))
    assert not torch.allclose(image, run(1.0))


def test_unet_in_bfloat16_stays_close(tiny: LatentDiffusion) -> None:
    noise, t, labels = _unet_inputs()
    module = LDM_SPEC.build("tiny").unet.to(torch.bfloat16)
    with torch.inference_mode():
        reference = tiny.unet(noise, t, labels)
        out = module(noise.to(torch.bfloat16), t, labels)
    assert out.dtype == torch.bfloat16
    rel = (out.float() - reference).abs().mean() / reference.abs().mean()
    assert rel.item() < 0.1


def test_unet_torch_export(tiny: LatentDiffusion) -> None:
    inputs = _unet_inputs()
    with torch.inference_mode():
        expected = tiny.unet(*inputs)
    exported = torch.export.export(tiny.unet, inputs)
    torch.testing.assert_close(exported.module()(*inputs), expected)


@pytest.mark.slow
def test_unet_compiles_without_graph_breaks(tiny: LatentDiffusion) -> None:
    inputs = _unet_inputs()
    with torch.inference_mode():
        expected = tiny.unet(*inputs)
    torch.compiler.reset()
    try:
        # aot_eager: Dynamo's full-graph capture and AOT tracing, without a C++ build.
        compiled = torch.compile(tiny.unet, fullgraph=True, backend="aot_eager")
        with torch.inference_mode():
            torch.testing.assert_close(compiled(*inputs), expected)
    finally:
        torch.compiler.reset()


@pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"
)
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning:torch")
def test_unet_onnx_export_torchscript(tiny: LatentDiffusion, tmp_path: Path) -> None:
    inputs = _unet_inputs()
    path = tmp_path / "ldm_unet.onnx"
    torch.onnx.export(tiny.unet, inputs, str(path), dynamo=False, opset_version=17)
    assert path.stat().st_size > 0
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    (out,) = session.run(None, feeds)
    with torch.inference_mode():
        expected = tiny.unet(*inputs)
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-4, atol=1e-4)


def test_param_counts_grow_with_size() -> None:
    counts = [sum(p.numel() for p in LDM_SPEC.build(size).parameters()) for size in LDM_SPEC.sizes]
    assert counts == sorted(counts) and len(set(counts)) == 3, counts
