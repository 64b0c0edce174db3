"""An example third-party pass, registered through the `genbench.passes` entry point.

`fuse-bn` folds every BatchNorm2d that follows a Conv2d/ConvTranspose2d into the
convolution's weights, a classic inference optimization for GAN generators.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from optimizers import Artifact, Pass, PassContext, TorchArtifact


def _fold(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out_dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0  # ConvTranspose weights are (in, out, kH, kW)
    shape = [1] * conv.weight.dim()
    shape[out_dim] = -1
    conv.weight.data = conv.weight * scale.reshape(shape)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


class FuseBatchNorm(Pass):
    name = "fuse-bn"
    summary = "fold BatchNorm into the preceding convolution (example plugin)"

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        assert isinstance(artifact, TorchArtifact)
        module = copy.deepcopy(artifact.module)
        folded = 0
        for parent in module.modules():
            children = list(parent.named_children())
            for (_, first), (name, second) in zip(children, children[1:], strict=False):
                if isinstance(first, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(second, nn.BatchNorm2d):
                    with torch.no_grad():
                        _fold(first, second)
                    setattr(parent, name, nn.Identity())
                    folded += 1
        return artifact.evolve(module=module, notes=(*artifact.notes, f"folded {folded} BatchNorm layers"))
