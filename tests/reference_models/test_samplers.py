"""The samplers against diffusers' schedulers configured as Stable Diffusion's, and classifier-free guidance.

The step rules are written from the papers; diffusers is only the yardstick, so
these tests are skipped where it is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from reference_models.ldm import LatentDiffusion
from reference_models.samplers import (
    SAMPLERS,
    DDIMSampler,
    EulerSampler,
    guided_noise,
    make_sampler,
    sample,
)

# Stable Diffusion v1's scheduler config (its scheduler_config.json).
SD_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}
LATENT = (2, 4, 8, 8)

# diffusers' Euler scheduler calls np.array on a tensor the way numpy 2 deprecates: its code, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning:diffusers.*")


def _ours() -> torch.Tensor:
    return LatentDiffusion.CONFIGS["tiny"].alphas_cumprod()


def _ddim_scheduler() -> Any:
    diffusers = pytest.importorskip("diffusers")
    return diffusers.DDIMScheduler(**SD_CONFIG, set_alpha_to_one=False, clip_sample=False)


def _euler_scheduler() -> Any:
    diffusers = pytest.importorskip("diffusers")
    return diffusers.EulerDiscreteScheduler(**SD_CONFIG, interpolation_type="linear")


def test_our_schedule_is_sds_scaled_linear() -> None:
    """Ours is float64; diffusers' is float32, so they agree to float32 rounding of a 1000-term product."""
    ours = _ours()
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    theirs = _ddim_scheduler().alphas_cumprod.to(torch.float64)
    torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=0.0)


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_matches_diffusers_at_every_step(steps: int) -> None:
    scheduler = _ddim_scheduler()
    scheduler.set_timesteps(steps)
    # The diffusers schedule itself, so the comparison is of the step rule alone (the schedules
    # differ by float32 rounding, checked above).
    sampler = DDIMSampler(scheduler.alphas_cumprod.to(torch.float64), steps)
    assert sampler.timesteps.dtype == torch.int64 and len(sampler.timesteps) == steps
    assert torch.equal(sampler.timesteps, scheduler.timesteps)
    assert sampler.init_noise_sigma == scheduler.init_noise_sigma == 1.0
    gen = torch.Generator().manual_seed(steps)
    x = torch.randn(LATENT, generator=gen)
    for i, t in enumerate(scheduler.timesteps):
        assert sampler.scale_model_input(x, i) is x
        eps = torch.randn(LATENT, generator=gen)
        expected = scheduler.step(eps, t, x).prev_sample
        got = sampler.step(eps, i, x)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=0.0, atol=1e-5)
        x = expected


@pytest.mark.parametrize("steps", [10, 50])
def test_euler_matches_diffusers_at_every_step(steps: int) -> None:
    scheduler = _euler_scheduler()
    scheduler.set_timesteps(steps)
    sampler = EulerSampler(scheduler.alphas_cumprod.to(torch.float64), steps)
    assert torch.equal(sampler.timesteps, scheduler.timesteps.to(torch.int64))
    assert sampler.init_noise_sigma == pytest.approx(float(scheduler.init_noise_sigma), rel=1e-6)
    torch.testing.assert_close(torch.tensor(sampler.sigmas), scheduler.sigmas, rtol=1e-6, atol=0.0)
    assert sampler.sigmas[-1] == 0.0
    gen = torch.Generator().manual_seed(steps)
    x = torch.randn(LATENT, generator=gen) * sampler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        torch.testing.assert_close(
            sampler.scale_model_input(x, i), scheduler.scale_model_input(x, t), rtol=0.0, atol=1e-5
        )
        eps = torch.randn(LATENT, generator=gen)
        expected = scheduler.step(eps, t, x).prev_sample
        torch.testing.assert_close(sampler.step(eps, i, x), expected, rtol=0.0, atol=1e-5)
        x = expected


def test_euler_with_our_schedule_starts_where_diffusers_does() -> None:
    scheduler = _euler_scheduler()
    scheduler.set_timesteps(30)
    sampler = make_sampler("euler", _ours(), 30)
    assert sampler.init_noise_sigma == pytest.approx(float(scheduler.init_noise_sigma), rel=1e-5)


def test_euler_at_every_training_step_clamps_the_top_timestep_like_diffusers() -> None:
    """steps == T puts the first leading timestep at T; diffusers' linear interp clamps it to T - 1."""
    scheduler = _euler_scheduler()
    scheduler.set_timesteps(1000)
    sampler = EulerSampler(scheduler.alphas_cumprod.to(torch.float64), 1000)
    assert int(sampler.timesteps[0]) == 1000
    torch.testing.assert_close(torch.tensor(sampler.sigmas), scheduler.sigmas, rtol=1e-6, atol=0.0)


def test_make_sampler_rejects_bad_arguments() -> None:
    schedule = _ours()
    assert SAMPLERS == ("ddim", "euler")
    assert isinstance(make_sampler("ddim", schedule, 5), DDIMSampler)
    assert isinstance(make_sampler("euler", schedule, 5), EulerSampler)
    with pytest.raises(ValueError, match="unknown sampler 'heun'; choose from ddim, euler"):
        make_sampler("heun", schedule, 5)
    for steps in (0, -1, 1001):
        with pytest.raises(ValueError, match=f"steps must be between 1 and 1000, got {steps}"):
            make_sampler("euler", schedule, steps)
    with pytest.raises(ValueError, match="ddim: steps must be at most 999"):
        make_sampler("ddim", schedule, 1000)
    with pytest.raises(ValueError, match="alphas_cumprod must be 1-D"):
        make_sampler("ddim", schedule[None], 5)
    with pytest.raises(ValueError, match=r"alphas_cumprod must lie in \(0, 1\]"):
        make_sampler("ddim", schedule - 1.0, 5)


def test_one_step_samplers_go_straight_to_the_end() -> None:
    """One DDIM step from t=1 to a_0; one Euler step from sigma_1 to 0 is x - sigma * eps."""
    schedule = _ours()
    x, eps = torch.randn(LATENT), torch.randn(LATENT)
    ddim = make_sampler("ddim", schedule, 1)
    assert ddim.timesteps.tolist() == [1]
    a_t, a_prev = float(schedule[1]), float(schedule[0])
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    torch.testing.assert_close(ddim.step(eps, 0, x), a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps)
    euler = make_sampler("euler", schedule, 1)
    sigma = ((1 - a_t) / a_t) ** 0.5
    torch.testing.assert_close(euler.step(eps, 0, x), x - sigma * eps)
    torch.testing.assert_close(euler.scale_model_input(x, 0), x / (sigma**2 + 1) ** 0.5)


class RecordingUNet:
    """A fake noise predictor: eps = 3 for a real class, 1 for the null class; records each call."""

    def __init__(self, null_class: int, dtype: torch.dtype = torch.float32) -> None:
        self.null_class = null_class
        self.dtype = dtype
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), t.clone(), labels.clone()))
        value = torch.where(labels == self.null_class, 1.0, 3.0)
        return (torch.zeros_like(x) + value[:, None, None, None]).to(self.dtype)


def test_guidance_doubles_the_batch_conditional_first() -> None:
    unet = RecordingUNet(null_class=10)
    x, labels = torch.randn(3, 4, 2, 2), torch.tensor([0, 4, 9])
    eps = guided_noise(unet, x, torch.tensor(981), labels, null_class=10, guidance=7.5)
    assert len(unet.calls) == 1
    seen_x, seen_t, seen_labels = unet.calls[0]
    assert seen_x.shape == (6, 4, 2, 2)
    assert torch.equal(seen_x[:3], x) and torch.equal(seen_x[3:], x)
    assert seen_t.dtype == torch.int64 and seen_t.tolist() == [981] * 6
    assert seen_labels.tolist() == [0, 4, 9, 10, 10, 10]
    # uncond + g * (cond - uncond) = 1 + 7.5 * (3 - 1)
    assert eps.shape == x.shape and torch.equal(eps, torch.full_like(x, 16.0))


def test_guidance_one_is_a_single_conditional_call() -> None:
    unet = RecordingUNet(null_class=10)
    x, labels = torch.randn(3, 4, 2, 2), torch.tensor([0, 4, 9])
    eps = guided_noise(unet, x, torch.tensor(5), labels, null_class=10, guidance=1.0)
    assert len(unet.calls) == 1
    seen_x, seen_t, seen_labels = unet.calls[0]
    assert seen_x.shape == (3, 4, 2, 2) and seen_t.tolist() == [5] * 3 and torch.equal(seen_labels, labels)
    assert torch.equal(eps, torch.full_like(x, 3.0))


def test_guidance_is_combined_in_float32_from_a_low_precision_unet() -> None:
    unet = RecordingUNet(null_class=10, dtype=torch.bfloat16)
    eps = guided_noise(unet, torch.randn(2, 4, 2, 2), torch.tensor(5), torch.tensor([1, 2]), 10, 2.0)
    assert eps.dtype == torch.float32 and torch.equal(eps, torch.full_like(eps, 5.0))


def test_sample_runs_the_documented_loop() -> None:
    """With eps = 3 (cond) / 1 (null), guidance g: each step sees eps = 1 + 2g; the VAE gets x / scale."""
    unet = RecordingUNet(null_class=10)
    sampler = make_sampler("euler", _ours(), 4)
    noise, labels = torch.randn(2, 4, 2, 2), torch.tensor([3, 7])
    decoded: list[torch.Tensor] = []

    def vae(z: torch.Tensor) -> torch.Tensor:
        decoded.append(z)
        return z * 2.0

    image = sample(unet, vae, noise, labels, sampler, guidance=3.0, null_class=10, scale_factor=0.5)
    assert len(unet.calls) == 4 and [int(c[1][0]) for c in unet.calls] == sampler.timesteps.tolist()
    x = noise * sampler.init_noise_sigma
    for i, (seen_x, _, seen_labels) in enumerate(unet.calls):
        assert seen_labels.tolist() == [3, 7, 10, 10]
        torch.testing.assert_close(seen_x[:2], sampler.scale_model_input(x, i))
        x = sampler.step(torch.full_like(x, 7.0), i, x)
    torch.testing.assert_close(decoded[0], x / 0.5)
    torch.testing.assert_close(image, x / 0.5 * 2.0)
