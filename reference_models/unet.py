"""DDPM-style diffusion UNet (Ho et al. 2020): one denoising step, (x_t, t) to predicted noise.

A sampler calls this network tens to a thousand times per image, so the unit of
work is one denoise step. It mixes every op family an optimiser must handle:
3x3 convs at several resolutions, GroupNorm, time conditioning through an MLP,
self-attention at low resolution, strided-conv downsampling, nearest upsampling
and skip concatenation. ``base`` reproduces the CIFAR-10 DDPM layout (~35.7M
parameters). Weights are random (seeded), with PyTorch's default initialisation;
DDPM's zero-initialised output layers are deliberately *not* reproduced, since
an untrained network that predicts exactly zero would make fidelity checks
vacuous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference_models.blocks import AttnBlock, ResnetBlock, Upsample, group_norm
from reference_models.spec import ModelSpec, build_seeded, seeded_generator

NUM_TIMESTEPS = 1000


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """DDPM's sinusoidal embedding of integer timesteps, in float32, built from torch ops.

    Torch ops only (no numpy, no Python branching on values) so the function
    traces for ONNX, torch.fx and torch.export; float32 so the phase of large
    timesteps is not lost when the module itself runs in bf16 or fp16.
    """
    half = dim // 2
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1))
    args = t.to(torch.float32)[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


@dataclass(frozen=True)
class UNetConfig:
    """One size of the UNet.

    ``ch_mult`` scales ``ch`` per resolution level; every level but the last
    halves the resolution. ``attn_resolutions`` lists the feature-map sides at
    which a self-attention block follows each ResBlock (DDPM CIFAR-10: 16).
    """

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    image_size: int
    in_channels: int = 3

    @property
    def temb_channels(self) -> int:
        return self.ch * 4


class Downsample(nn.Module):
    """Stride-2 3x3 conv (padding 1, so odd sides round up rather than being cropped)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Stage(nn.Module):
    """A ResBlock, optionally followed by attention: the repeating unit of both UNet paths."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, attn: bool) -> None:
        super().__init__()
        self.res = ResnetBlock(in_channels, out_channels, temb_channels)
        self.attn: nn.Module = AttnBlock(out_channels, fused_qkv=True) if attn else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.attn(self.res(x, temb))


class DiffusionUNet(nn.Module):
    """``forward(x, t)``: noisy image (B, C, H, W) and int64 timesteps (B,) to noise (B, C, H, W).

    The layer order (and so the skip bookkeeping) is fixed at construction, so
    ``forward`` has no data-dependent control flow: the loops unroll identically
    under tracing and export.
    """

    CONFIGS: dict[str, UNetConfig] = {
        "tiny": UNetConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), image_size=16),
        "small": UNetConfig(
            ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(16,), image_size=32
        ),
        "base": UNetConfig(
            ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), image_size=32
        ),
    }

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        ch, temb_ch = config.ch, config.temb_channels
        self.time_mlp = nn.Sequential(nn.Linear(ch, temb_ch), nn.SiLU(), nn.Linear(temb_ch, temb_ch))
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)

        # Encoder: every Stage and Downsample output is kept for a skip connection.
        self.down = nn.ModuleList()
        skip_channels = [ch]
        cur, res = ch, config.image_size
        for level, mult in enumerate(config.ch_mult):
            out = ch * mult
            for _ in range(config.num_res_blocks):
                self.down.append(Stage(cur, out, temb_ch, res in config.attn_resolutions))
                cur = out
                skip_channels.append(cur)
            if level != len(config.ch_mult) - 1:
                self.down.append(Downsample(cur))
                skip_channels.append(cur)
                res //= 2

        self.mid = nn.ModuleList([Stage(cur, cur, temb_ch, attn=True), Stage(cur, cur, temb_ch, attn=False)])

        # Decoder: num_res_blocks + 1 Stages per level, each eating one skip.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.ch_mult))):
            out = ch * mult
            for _ in range(config.num_res_blocks + 1):
                self.up.append(Stage(cur + skip_channels.pop(), out, temb_ch, res in config.attn_resolutions))
                cur = out
            if level != 0:
                self.up.append(Upsample(cur))
                res *= 2

        self.norm_out = group_norm(cur)
        self.conv_out = nn.Conv2d(cur, config.in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.body(x, self.time_embedding(t))

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """Timesteps (B,) to the (B, temb_channels) conditioning vector every ResBlock receives.

        Split from ``body`` so a conditioned UNet (reference_models.ldm) can add its
        own embedding (a class) to this one before the network runs.
        """
        temb = timestep_embedding(t, self.config.ch).to(self.time_mlp[0].weight.dtype)
        return self.time_mlp(temb)

    def body(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """The UNet proper: input (B, C, H, W) and conditioning (B, temb_channels) to (B, C, H, W)."""
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, Stage) else layer(h)
            skips.append(h)

        for stage in self.mid:
            h = stage(h, temb)

        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
                continue
            h = layer(torch.cat([h, skips.pop()], dim=1), temb)

        return self.conv_out(F.silu(self.norm_out(h)))


def build(size: str) -> nn.Module:
    """A fresh, seeded fp32 UNet in eval mode; equal sizes give equal weights."""
    UNET_SPEC.check_size(size)
    config = DiffusionUNet.CONFIGS[size]
    return build_seeded(lambda: DiffusionUNet(config), seed=0)


def example_inputs(batch_size: int, size: str, seed: int) -> tuple[torch.Tensor, ...]:
    """``x_t ~ N(0, 1)`` (B, C, S, S) and int64 timesteps uniform in [0, 1000), as in training."""
    UNET_SPEC.check_size(size)
    config = DiffusionUNet.CONFIGS[size]
    gen = seeded_generator(seed)
    x = torch.randn((batch_size, config.in_channels, config.image_size, config.image_size), generator=gen)
    t = torch.randint(0, NUM_TIMESTEPS, (batch_size,), generator=gen, dtype=torch.int64)
    return (x, t)


UNET_SPEC = ModelSpec(
    name="unet",
    family="diffusion",
    item="denoise-step",
    build=build,
    example_inputs=example_inputs,
    description="DDPM-style UNet, one denoise step: (x (B, 3, S, S), t (B,) int64) -> noise; S = 16 / 32 / 32",
)
