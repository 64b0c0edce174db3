"""Stable-Diffusion-style AutoencoderKL decoder: latent (B, 4, h, w) to image (B, 3, 8h, 8w).

The decoder is the expensive, memory-bound half of latent diffusion at high
resolution: wide 3x3 convolutions on large feature maps, GroupNorm everywhere and
one full self-attention over the lowest-resolution positions. The layout and
parameter names follow the SD / ``ldm`` decoder (``conv_in``, ``mid``, ``up``,
``norm_out``, ``conv_out``) so its profile resembles the real thing; the weights
are random (seeded), with PyTorch's default initialisation, which GroupNorm
keeps well-conditioned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference_models.blocks import AttnBlock, ResnetBlock, Upsample, group_norm
from reference_models.spec import ModelSpec, build_seeded, seeded_generator


@dataclass(frozen=True)
class VAEDecoderConfig:
    """One size of the decoder.

    ``widths`` are the channels per level from full resolution down (as in SD's
    ``ch * ch_mult``); the decoder walks them in reverse and upsamples 2x after
    every level but the last, so the image is ``2 ** (len(widths) - 1)`` times the
    latent side. ``res_blocks`` is per level (SD's ``num_res_blocks + 1 = 3``).
    """

    widths: tuple[int, ...]
    res_blocks: int
    latent_size: int
    latent_channels: int = 4
    out_channels: int = 3

    @property
    def scale(self) -> int:
        return 2 ** (len(self.widths) - 1)

    @property
    def image_size(self) -> int:
        return self.latent_size * self.scale


class UpLevel(nn.Module):
    """One decoder level: its ResnetBlocks, then (except at full resolution) an upsampler."""

    def __init__(self, in_channels: int, out_channels: int, res_blocks: int, upsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(res_blocks)
        )
        self.upsample: nn.Module = Upsample(out_channels) if upsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return self.upsample(x)


class MidBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels, fused_qkv=False)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class VAEDecoder(nn.Module):
    """AutoencoderKL.decode: ``post_quant_conv`` then the decoder, latent to image.

    The image is not clamped: SD pipelines clamp afterwards, and clamping here
    would hide numeric drift from fidelity checks.
    """

    CONFIGS: dict[str, VAEDecoderConfig] = {
        "tiny": VAEDecoderConfig(widths=(8, 16, 16, 16), res_blocks=1, latent_size=4),  # 4 -> 32
        "small": VAEDecoderConfig(widths=(16, 32, 64, 64), res_blocks=2, latent_size=16),  # 16 -> 128
        "base": VAEDecoderConfig(widths=(128, 256, 512, 512), res_blocks=3, latent_size=32),  # 32 -> 256, SD
    }

    def __init__(self, config: VAEDecoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        top = widths[-1]
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)
        self.conv_in = nn.Conv2d(config.latent_channels, top, 3, padding=1)
        self.mid = MidBlock(top)
        levels: list[nn.Module] = []
        in_ch = top
        for level in reversed(range(len(widths))):
            levels.append(UpLevel(in_ch, widths[level], config.res_blocks, upsample=level != 0))
            in_ch = widths[level]
        self.up = nn.Sequential(*levels)
        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(self.post_quant_conv(z))
        h = self.up(self.mid(h))
        return self.conv_out(F.silu(self.norm_out(h)))


def build(size: str) -> nn.Module:
    """A fresh, seeded fp32 decoder in eval mode; equal sizes give equal weights."""
    VAE_SPEC.check_size(size)
    config = VAEDecoder.CONFIGS[size]
    return build_seeded(lambda: VAEDecoder(config), seed=0)


def example_inputs(batch_size: int, size: str, seed: int) -> tuple[torch.Tensor, ...]:
    """A latent ``N(0, 1)`` of shape (B, 4, h, w): what a diffusion sampler hands the decoder."""
    VAE_SPEC.check_size(size)
    config = VAEDecoder.CONFIGS[size]
    shape = (batch_size, config.latent_channels, config.latent_size, config.latent_size)
    return (torch.randn(shape, generator=seeded_generator(seed)),)


VAE_SPEC = ModelSpec(
    name="vae",
    family="vae",
    item="image",
    build=build,
    example_inputs=example_inputs,
    description="SD-style AutoencoderKL decoder: latent (B, 4, h, w) -> image (B, 3, 8h, 8w); 32 / 128 / 256 px",
)
