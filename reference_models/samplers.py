"""Diffusion samplers for the ``ldm`` model, written from the papers, and the reference sampling loop.

A sampler turns a noise schedule (``alphas_cumprod``, the cumulative product of
``1 - beta_t`` over training timesteps) and a step count into the timesteps at
which the UNet is called and the rule that moves the latent from one to the
next. The spacing and end-point conventions are Stable Diffusion's scheduler
config (diffusers' ``timestep_spacing="leading"``, ``steps_offset=1``), so the
tests can check each step against diffusers; nothing here imports diffusers.

Every sampler is indexed by step number ``i`` rather than keeping a counter, so
one sampler object can serve many runs. All arithmetic is float32 whatever
precision the UNet runs in: the latent is the sampler's state and rounding it
to bf16 every step would compound, which SD pipelines avoid the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

SAMPLERS: tuple[str, ...] = ("ddim", "euler")

#: ``unet(latents (B, C, h, w), timesteps (B,) int64, class_labels (B,) int64) -> noise (B, C, h, w)``
NoisePredictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Sampler(Protocol):
    """What the sampling loop needs from a sampler.

    ``timesteps`` (int64, descending, one per step) are what the UNet is told;
    the loop starts from ``noise * init_noise_sigma``, feeds the UNet
    ``scale_model_input(x, i)`` and moves on with ``x = step(eps, i, x)``.
    """

    timesteps: torch.Tensor
    init_noise_sigma: float

    def scale_model_input(self, x: torch.Tensor, i: int) -> torch.Tensor: ...

    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor: ...


def _check_schedule(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The schedule as a float64 1-D tensor on the CPU, checked to be a real cumulative product."""
    if alphas_cumprod.dim() != 1 or alphas_cumprod.numel() < 2:
        raise ValueError(
            f"alphas_cumprod must be 1-D with at least 2 entries, got shape {tuple(alphas_cumprod.shape)}"
        )
    schedule = alphas_cumprod.detach().to("cpu", torch.float64)
    if not bool(((schedule > 0) & (schedule <= 1)).all()):
        raise ValueError("alphas_cumprod must lie in (0, 1]")
    return schedule


def _leading_timesteps(num_train_timesteps: int, steps: int) -> torch.Tensor:
    """SD's "leading" spacing with ``steps_offset=1``: ``k * (T // steps) + 1`` for k = steps-1 .. 0.

    Leading spacing (Lin et al. 2023, Table 2) never reaches t = T - 1 unless
    ``steps`` divides evenly; that is SD's convention, kept so results match.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be between 1 and {num_train_timesteps}, got {steps}")
    ratio = num_train_timesteps // steps
    return torch.arange(steps - 1, -1, -1, dtype=torch.int64) * ratio + 1


class DDIMSampler:
    """Deterministic DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 with eta = 0).

    With ``a_t`` the cumulative alpha at timestep t and ``eps`` the predicted noise,
    eq. 12 predicts the clean sample and re-noises it to the previous timestep along
    the same noise direction::

        x0     = (x_t - sqrt(1 - a_t) * eps) / sqrt(a_t)
        x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps

    The previous timestep is ``t - T // steps``; below 0 it is ``a_0`` (SD's
    ``set_alpha_to_one=False``), so the last step lands at t = 0, not at a clean
    image. No clipping of ``x0`` (``clip_sample=False``): latents are unbounded.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, steps: int) -> None:
        schedule = _check_schedule(alphas_cumprod)
        num_train = schedule.numel()
        self.timesteps = _leading_timesteps(num_train, steps)
        if int(self.timesteps[0]) >= num_train:
            # steps == T: the offset puts the first timestep at T, past the schedule (diffusers fails too).
            raise ValueError(f"ddim: steps must be at most {num_train - 1} with leading spacing, got {steps}")
        self.init_noise_sigma = 1.0
        ratio = num_train // steps
        alpha = [float(schedule[int(t)]) for t in self.timesteps]
        alpha_prev = [
            float(schedule[int(t) - ratio]) if int(t) >= ratio else float(schedule[0]) for t in self.timesteps
        ]
        # Per-step coefficients as Python floats: no tensors to move to the latent's device.
        self._sqrt_alpha = [math.sqrt(a) for a in alpha]
        self._sqrt_one_minus_alpha = [math.sqrt(1.0 - a) for a in alpha]
        self._sqrt_alpha_prev = [math.sqrt(a) for a in alpha_prev]
        self._sqrt_one_minus_alpha_prev = [math.sqrt(1.0 - a) for a in alpha_prev]

    def scale_model_input(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """DDIM feeds the UNet the latent as it is."""
        return x

    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        eps, x = eps.float(), x.float()
        x0 = (x - self._sqrt_one_minus_alpha[i] * eps) / self._sqrt_alpha[i]
        return self._sqrt_alpha_prev[i] * x0 + self._sqrt_one_minus_alpha_prev[i] * eps


class EulerSampler:
    """Euler's method on the probability-flow ODE in sigma space (Karras et al. 2022).

    That is Karras et al.'s Algorithm 1 without the second-order correction and
    with no stochastic churn (diffusers' ``s_churn=0``).

    Karras et al. write the variance-preserving latent as ``x = (x_0 + sigma * n) / sqrt(1 + sigma^2)``
    with ``sigma = sqrt((1 - a_t) / a_t)``; the sampler keeps the unscaled
    ``x_0 + sigma * n``, so the UNet (trained on the scaled form) is fed
    ``x / sqrt(sigma^2 + 1)``. For an epsilon-predicting network the ODE's
    derivative ``dx/dsigma = (x - D(x)) / sigma`` is the predicted noise itself,
    so one step is ``x_prev = x + (sigma_{i+1} - sigma_i) * eps``.

    Sigmas are the schedule's at each timestep (linear interpolation, which at
    SD's integer timesteps is a lookup, clamped at the last training step like
    numpy's interp), then 0. The starting noise has standard deviation
    ``sqrt(sigma_0^2 + 1)``, as diffusers' EulerDiscreteScheduler gives for
    leading spacing (the ``+ 1`` accounts for the signal's variance).
    """

    def __init__(self, alphas_cumprod: torch.Tensor, steps: int) -> None:
        schedule = _check_schedule(alphas_cumprod)
        num_train = schedule.numel()
        self.timesteps = _leading_timesteps(num_train, steps)
        all_sigmas = ((1.0 - schedule) / schedule).sqrt()
        self._sigmas = [float(all_sigmas[min(int(t), num_train - 1)]) for t in self.timesteps] + [0.0]
        self.init_noise_sigma = math.sqrt(max(self._sigmas) ** 2 + 1.0)

    @property
    def sigmas(self) -> list[float]:
        """sigma_i for every step, then the final 0 (``steps + 1`` values)."""
        return list(self._sigmas)

    def scale_model_input(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return x / math.sqrt(self._sigmas[i] ** 2 + 1.0)

    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        return x.float() + (self._sigmas[i + 1] - self._sigmas[i]) * eps.float()


def make_sampler(name: str, alphas_cumprod: torch.Tensor, steps: int) -> Sampler:
    """The sampler called ``name`` (one of ``SAMPLERS``) for ``steps`` steps of the given schedule."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    # Each sampler checks the schedule and that 1 <= steps <= len(alphas_cumprod).
    if name == "ddim":
        return DDIMSampler(alphas_cumprod, steps)
    return EulerSampler(alphas_cumprod, steps)


def guided_noise(
    unet: NoisePredictor,
    x: torch.Tensor,
    t: torch.Tensor,
    class_labels: torch.Tensor,
    null_class: int,
    guidance: float,
) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ``uncond + guidance * (cond - uncond)``, in float32.

    As Stable Diffusion pipelines run it: one UNet call on the doubled batch
    (conditional half first, then the same latents with the null class), since
    one call of 2B is cheaper than two of B and is what a benchmark should time.
    ``guidance == 1`` is the plain conditional prediction, so it is one call of B.
    ``t`` is the step's 0-d int64 timestep, expanded to the batch.
    """
    batch = x.shape[0]
    t = t.to(x.device)
    if guidance == 1.0:
        return unet(x, t.reshape(1).expand(batch).contiguous(), class_labels).float()
    labels = torch.cat([class_labels, torch.full_like(class_labels, null_class)])
    eps = unet(torch.cat([x, x]), t.reshape(1).expand(2 * batch).contiguous(), labels).float()
    cond, uncond = eps.chunk(2)
    return uncond + guidance * (cond - uncond)


def sample(
    unet: NoisePredictor,
    vae: Callable[[torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    class_labels: torch.Tensor,
    sampler: Sampler,
    guidance: float,
    null_class: int,
    scale_factor: float,
) -> torch.Tensor:
    """The reference sampling loop: guided denoising from ``noise`` to a latent, then the VAE decode.

    ``x = noise * init_noise_sigma``; for each step i,
    ``eps = guided_noise(unet, scale_model_input(x, i), timesteps[i], ...)`` and
    ``x = step(eps, i, x)``; finally ``image = vae(x / scale_factor)`` (latents are
    trained scaled by ``scale_factor``). The latent stays float32 throughout;
    ``unet`` and ``vae`` take float32 and cast to their own precision if needed.
    """
    with torch.inference_mode():
        x = noise.float() * sampler.init_noise_sigma
        for i in range(len(sampler.timesteps)):
            model_input = sampler.scale_model_input(x, i)
            eps = guided_noise(unet, model_input, sampler.timesteps[i], class_labels, null_class, guidance)
            x = sampler.step(eps, i, x)
        return vae(x / scale_factor)
