"""Class-conditional latent diffusion (Rombach et al. 2022): a UNet denoising 4-channel latents, then a VAE decode.

One measured call is a whole sampling run (workload ``sample``): tens of
guided UNet steps on the latent, then the SD-style decoder
(reference_models.vae) from latent to image. The UNet is the DDPM UNet of
reference_models.unet on 4 latent channels, conditioned on an ImageNet-style
class through an embedding added to the time embedding; its extra row is the
null class that classifier-free guidance's unconditional half uses. The noise
schedule is SD's "scaled_linear" one, and the latents are decoded divided by
SD's ``scale_factor``, so the samplers (reference_models.samplers) run exactly
as they would for Stable Diffusion. Weights are random (seeded), with PyTorch's
default initialisation, as for the other reference models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reference_models.spec import ModelSpec, build_seeded, seeded_generator
from reference_models.unet import DiffusionUNet, UNetConfig
from reference_models.vae import VAEDecoder, VAEDecoderConfig


@dataclass(frozen=True)
class LDMConfig:
    """One size of the pipeline: the latent UNet, the decoder, the classes and the noise schedule.

    ``unet.image_size`` is the latent side and ``unet.in_channels`` the latent
    channels, so both must agree with the decoder's. The schedule is SD's
    "scaled_linear": ``betas = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2``.
    """

    unet: UNetConfig
    vae: VAEDecoderConfig
    num_classes: int = 1000
    scale_factor: float = 0.18215
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012

    def __post_init__(self) -> None:
        if self.unet.in_channels != self.vae.latent_channels:
            raise ValueError(
                f"UNet has {self.unet.in_channels} channels but the VAE decodes {self.vae.latent_channels}"
            )
        if self.unet.image_size != self.vae.latent_size:
            raise ValueError(
                f"UNet side {self.unet.image_size} is not the VAE latent side {self.vae.latent_size}"
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be at least 2, got {self.num_train_timesteps}")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start} and {self.beta_end}")
        if self.scale_factor <= 0.0:
            raise ValueError(f"scale_factor must be positive, got {self.scale_factor}")

    def alphas_cumprod(self) -> torch.Tensor:
        """The cumulative product of ``1 - beta_t``, float64 (T,), what every sampler is built from."""
        count = self.num_train_timesteps
        betas = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, count, dtype=torch.float64) ** 2
        return torch.cumprod(1.0 - betas, dim=0)


_VAE = VAEDecoder.CONFIGS


def _latent_unet(
    ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, attn: int, vae: VAEDecoderConfig
) -> UNetConfig:
    """A UNet size on the decoder's latents: side ``latent_size``, ``latent_channels`` in and out."""
    return UNetConfig(
        ch=ch,
        ch_mult=ch_mult,
        num_res_blocks=num_res_blocks,
        attn_resolutions=(attn,),
        image_size=vae.latent_size,
        in_channels=vae.latent_channels,
    )


class ClassConditionalUNet(nn.Module):
    """``forward(latents, timesteps, class_labels)``: (B, 4, h, w) float, (B,) int64, (B,) int64 to noise (B, 4, h, w).

    The class enters as DiT and ADM's class-conditional models do it: a learned
    embedding of width ``temb_channels`` added to the time embedding, so every
    ResBlock sees both. Row ``num_classes`` is the null class. Built by
    composition around DiffusionUNet (its ``time_embedding`` and ``body``), so
    the UNet's blocks and their order are the ``unet`` model's; the path has no
    branching on tensor values, so it traces for ONNX, torch.export and
    torch.compile.
    """

    def __init__(self, config: UNetConfig, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = DiffusionUNet(config)
        self.class_embed = nn.Embedding(num_classes + 1, config.temb_channels)

    @property
    def null_class(self) -> int:
        """The label whose embedding stands for "no class" (guidance's unconditional half)."""
        return self.num_classes

    def forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor
    ) -> torch.Tensor:
        temb = self.net.time_embedding(timesteps) + self.class_embed(class_labels)
        return self.net.body(latents, temb)


class LatentDiffusion(nn.Module):
    """The pipeline's networks and constants: ``unet`` (ClassConditionalUNet), ``vae`` (VAEDecoder), ``config``.

    It is not one network, so it has no forward: sampling is a loop over a
    sampler's steps (reference_models.samplers.sample, or the harness's timed
    ``sample`` workload), and optimisers act on ``unet`` and ``vae`` separately.
    """

    CONFIGS: dict[str, LDMConfig] = {
        # Latent 4 -> 32 px; the UNet's levels are at sides 4 and 2, attention at 2.
        "tiny": LDMConfig(unet=_latent_unet(16, (1, 2), 1, 2, _VAE["tiny"]), vae=_VAE["tiny"]),
        # Latent 16 -> 128 px; levels 16, 8, 4, attention at 8.
        "small": LDMConfig(unet=_latent_unet(64, (1, 2, 2), 2, 8, _VAE["small"]), vae=_VAE["small"]),
        # Latent 32 -> 256 px: DDPM's CIFAR-10 UNet layout (attention at 16) and SD's decoder.
        "base": LDMConfig(unet=_latent_unet(128, (1, 2, 2, 2), 2, 16, _VAE["base"]), vae=_VAE["base"]),
    }

    def __init__(self, config: LDMConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = ClassConditionalUNet(config.unet, config.num_classes)
        self.vae = VAEDecoder(config.vae)

    @property
    def null_class(self) -> int:
        return self.unet.null_class

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        """(B, C, h, w) of the latents the UNet denoises and the VAE decodes."""
        side = self.config.vae.latent_size
        return (batch, self.config.vae.latent_channels, side, side)

    def alphas_cumprod(self) -> torch.Tensor:
        """The training noise schedule, float64 (T,)."""
        return self.config.alphas_cumprod()

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError(
            "LatentDiffusion is a sampling pipeline, not one network: run it with the 'sample' workload "
            "or reference_models.samplers.sample(model.unet, model.vae, ...)"
        )


def build(size: str) -> nn.Module:
    """A fresh, seeded fp32 pipeline in eval mode (UNet built first, then the VAE); equal sizes give equal weights."""
    LDM_SPEC.check_size(size)
    config = LatentDiffusion.CONFIGS[size]
    return build_seeded(lambda: LatentDiffusion(config), seed=0)


def example_inputs(batch_size: int, size: str, seed: int) -> tuple[torch.Tensor, ...]:
    """The starting noise ``N(0, 1)`` of the latent shape and int64 class labels uniform in [0, num_classes)."""
    LDM_SPEC.check_size(size)
    config = LatentDiffusion.CONFIGS[size]
    gen = seeded_generator(seed)
    side = config.vae.latent_size
    noise = torch.randn((batch_size, config.vae.latent_channels, side, side), generator=gen)
    labels = torch.randint(0, config.num_classes, (batch_size,), generator=gen, dtype=torch.int64)
    return (noise, labels)


LDM_SPEC = ModelSpec(
    name="ldm",
    family="diffusion",
    item="image",
    build=build,
    example_inputs=example_inputs,
    workload="sample",
    description=(
        "class-conditional latent diffusion, one sampling run: guided UNet steps on latents (B, 4, h, w) "
        "+ SD-style VAE decode; inputs noise and class labels; 32 / 128 / 256 px"
    ),
)
