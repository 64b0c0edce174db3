"""DCGAN generator (Radford et al. 2016): the smallest, convolution-only generative workload.

It stands for the "one forward pass per image" end of the benchmark: transposed
convolutions, BatchNorm and ReLU, with no attention and no normalisation that
depends on the batch at inference time.

Weights are random, so the BatchNorm running statistics are set from the weights
themselves (see :func:`_calibrate_batchnorm`): with the default ``running_var = 1``
the 0.02-std DCGAN weights would shrink every layer's activations and the image
would be almost constant, which would make fidelity checks after an optimisation
meaningless (every variant would "match" a flat image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from reference_models.spec import ModelSpec, build_seeded, seeded_generator

# DCGAN's published initialisation for the hidden transposed convolutions.
_DCGAN_WEIGHT_STD = 0.02
# E[x^2] of the input to each layer: 1 for the N(0, 1) latent, about 1/2 after
# BatchNorm (unit variance, zero mean) followed by ReLU.
_LATENT_SECOND_MOMENT = 1.0
_RELU_SECOND_MOMENT = 0.5
# Pre-tanh variance aimed for at the output layer: std ~0.7, so tanh is well
# inside its linear-ish range (output std ~0.55) rather than saturated or flat.
_OUTPUT_PRE_TANH_VAR = 0.5


@dataclass(frozen=True)
class DCGANConfig:
    """One size of the generator.

    ``mults`` gives the channel multiplier of ``ngf`` for each hidden stage,
    starting at the 4x4 stage; every stage after the first doubles the
    resolution, and the final layer doubles it once more to RGB, so the image
    side is ``4 * 2 ** len(mults)``.
    """

    nz: int
    ngf: int
    mults: tuple[int, ...]
    out_channels: int = 3

    @property
    def image_size(self) -> int:
        return 4 * 2 ** len(self.mults)


class DCGANGenerator(nn.Module):
    """``z`` of shape (B, nz, 1, 1) to an image in [-1, 1] of shape (B, 3, S, S)."""

    CONFIGS: dict[str, DCGANConfig] = {
        "tiny": DCGANConfig(nz=16, ngf=8, mults=(2, 1)),  # 16x16
        "small": DCGANConfig(nz=100, ngf=64, mults=(8, 4, 2, 1)),  # 64x64, the classic DCGAN
        "base": DCGANConfig(nz=128, ngf=128, mults=(8, 8, 4, 2, 1)),  # 128x128
    }

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.ngf * m for m in config.mults]
        layers: list[nn.Module] = []
        in_ch = config.nz
        for i, out_ch in enumerate(widths):
            # First stage: 1x1 -> 4x4 (kernel 4, stride 1, no padding); the rest double the side.
            stride, padding = (1, 0) if i == 0 else (2, 1)
            layers += [
                nn.ConvTranspose2d(in_ch, out_ch, 4, stride, padding, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(),
            ]
            in_ch = out_ch
        layers += [nn.ConvTranspose2d(in_ch, config.out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        convs = [m for m in self.main if isinstance(m, nn.ConvTranspose2d)]
        norms = [m for m in self.main if isinstance(m, nn.BatchNorm2d)]
        for conv in convs[:-1]:
            nn.init.normal_(conv.weight, 0.0, _DCGAN_WEIGHT_STD)
        # The output layer has no BatchNorm after it, so 0.02 would leave the
        # pre-tanh signal tiny for narrow generators; scale by fan-in instead.
        last = convs[-1]
        fan_in = last.in_channels * _taps_per_output(last, first=False)
        nn.init.normal_(last.weight, 0.0, math.sqrt(_OUTPUT_PRE_TANH_VAR / (_RELU_SECOND_MOMENT * fan_in)))
        for i, (conv, norm) in enumerate(zip(convs[:-1], norms, strict=True)):
            moment = _LATENT_SECOND_MOMENT if i == 0 else _RELU_SECOND_MOMENT
            _calibrate_batchnorm(conv, norm, moment, first=i == 0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def _taps_per_output(conv: nn.ConvTranspose2d, first: bool) -> int:
    """How many kernel taps reach one output pixel, on average over pixel positions.

    The first layer maps a 1x1 input to a 4x4 output, one tap per pixel; a
    stride-2 kernel-4 layer sends (4/2)^2 = 4 taps to each output pixel.
    """
    if first:
        return 1
    k, s = conv.kernel_size[0], conv.stride[0]
    return (k // s) ** 2


@torch.no_grad()
def _calibrate_batchnorm(
    conv: nn.ConvTranspose2d, norm: nn.BatchNorm2d, in_moment: float, first: bool
) -> None:
    """Give BatchNorm the statistics it would have measured on this conv's output.

    Each output channel's variance is ``E[x^2] * sum(w^2) * taps / k^2`` for
    independent inputs; a +-20% jitter and a small mean keep the running stats
    and affine parameters non-trivial (so BatchNorm folding and quantisation see
    realistic numbers) while activations stay O(1).
    """
    k2 = conv.kernel_size[0] * conv.kernel_size[1]
    per_channel = conv.weight.pow(2).sum(dim=(0, 2, 3))  # (out_channels,)
    var = in_moment * per_channel * _taps_per_output(conv, first) / k2
    c = norm.num_features
    norm.running_var.copy_(var * torch.empty(c).uniform_(0.8, 1.2))
    norm.running_mean.copy_(torch.randn(c) * 0.1 * var.sqrt())
    norm.weight.normal_(1.0, _DCGAN_WEIGHT_STD)  # DCGAN's BatchNorm init
    norm.bias.normal_(0.0, 0.05)
    norm.num_batches_tracked.fill_(1)


def build(size: str) -> nn.Module:
    """A fresh, seeded fp32 generator in eval mode; equal sizes give equal weights."""
    DCGAN_SPEC.check_size(size)
    config = DCGANGenerator.CONFIGS[size]
    return build_seeded(lambda: DCGANGenerator(config), seed=0)


def example_inputs(batch_size: int, size: str, seed: int) -> tuple[torch.Tensor, ...]:
    """The latent ``z ~ N(0, 1)`` of shape (B, nz, 1, 1), as the generator is trained on."""
    DCGAN_SPEC.check_size(size)
    config = DCGANGenerator.CONFIGS[size]
    z = torch.randn((batch_size, config.nz, 1, 1), generator=seeded_generator(seed))
    return (z,)


DCGAN_SPEC = ModelSpec(
    name="dcgan",
    family="gan",
    item="image",
    build=build,
    example_inputs=example_inputs,
    description="DCGAN generator: latent (B, nz, 1, 1) -> image (B, 3, S, S); S = 16 / 64 / 128",
)
