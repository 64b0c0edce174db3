"""Building blocks shared by the diffusion UNet and the VAE decoder.

Attribute names are part of each model's interface: they fix the ``state_dict``
keys (``norm1``, ``conv1``, ``temb_proj``, ... as in DDPM / ``ldm``), and
``optimizers.attention_pruning`` recognises attention blocks by their layout (``norm``,
``qkv`` or ``q``/``k``/``v``, ``proj_out``). Submodules are created in a fixed
order because seeded weights are drawn in construction order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with DDPM / SD's 32 groups, fewer when the channel count is too small.

    Halving until each group holds at least two channels keeps narrow (tiny)
    models a real *group* norm rather than degenerating into instance norm.
    """
    groups = 32
    while groups > 1 and (channels % groups or channels < 2 * groups):
        groups //= 2
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus a 1x1 shortcut when the width changes.

    With ``temb_channels`` (the UNet), a projection of the time embedding is
    added after the first conv and ``forward`` takes ``(x, temb)``; without it
    (the VAE decoder) there is no ``temb_proj`` and ``forward`` takes ``x``.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int | None = None) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj: nn.Linear | None = (
            nn.Linear(temb_channels, out_channels) if temb_channels is not None else None
        )
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb_proj is not None:
            h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions: 1x1 q/k/v convs, SDPA, projection.

    ``fused_qkv=True`` (the UNet) computes q, k and v with one ``qkv`` conv of
    3C outputs; ``False`` (the SD VAE mid block) with three convs ``q``, ``k``, ``v``.
    """

    def __init__(self, channels: int, fused_qkv: bool) -> None:
        super().__init__()
        self.fused_qkv = fused_qkv
        self.norm = group_norm(channels)
        if fused_qkv:
            self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        else:
            self.q = nn.Conv2d(channels, channels, 1)
            self.k = nn.Conv2d(channels, channels, 1)
            self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hn = self.norm(x)
        # (B, C, H, W) -> (B, HW, C). flatten/reshape rather than view so channels_last
        # inputs work, and no unpacking of x.shape so torch.fx can trace it.
        if self.fused_qkv:
            q, k, v = self.qkv(hn).flatten(2).transpose(1, 2).chunk(3, dim=2)
        else:
            q = self.q(hn).flatten(2).transpose(1, 2)
            k = self.k(hn).flatten(2).transpose(1, 2)
            v = self.v(hn).flatten(2).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(out.transpose(1, 2).reshape(x.shape))


class Upsample(nn.Module):
    """Nearest-neighbour 2x then a 3x3 conv (DDPM's and SD's upsampler)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
