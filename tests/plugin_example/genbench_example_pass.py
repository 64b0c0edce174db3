"""fuse-bn: fold each BatchNorm2d into the convolution before it, as a genbench plugin.

In eval mode a BatchNorm2d is a per-channel scale and shift, so it can be folded
into the weights and bias of the Conv2d or ConvTranspose2d that feeds it: one
layer less per pair, the same function. Registered through the
``genbench.passes`` entry point; after ``pip install .`` it runs as
``python -m bench run --pipelines fp32,fuse-bn``.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn

from optimizers import Artifact, ArtifactState, NotApplicable, Pass, PassContext, TorchArtifact


def foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """A convolution, then a BatchNorm2d in eval mode with running statistics."""
    if isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1:
        return False  # its weights are (in, out / groups, kH, kW): not one scale per row
    is_conv = isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
    is_bn = isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.running_var is not None
    return is_conv and is_bn and not bn.training


@torch.no_grad()
def fold(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """Make ``conv`` compute ``bn(conv(x))``: scale its output channels, shift its bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = [1] * conv.weight.dim()  # output channels: dim 0 of Conv2d, 1 of ConvTranspose2d
    shape[1 if isinstance(conv, nn.ConvTranspose2d) else 0] = -1
    conv.weight.mul_(scale.reshape(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


class FuseBatchNorm(Pass):
    name = "fuse-bn"  # the name in --pipelines
    consumes = ("torch",)  # the artifact kinds it takes: torch, onnx, tensorrt
    summary = "fold BatchNorm2d into the convolution before it (example plugin)"

    def refuses(self, state: ArtifactState) -> str | None:
        # Asked when the pipeline is parsed, before any model is built:
        # "compile+fuse-bn" exits with code 2 and this reason.
        if state.compiled:
            return "fuse-bn changes the module's layers: put fuse-bn before compile"
        return super().refuses(state)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)  # refuses, asked of the real artifact
        module = copy.deepcopy(art.module)  # never change the artifact you were given
        folded: Counter[str] = Counter()
        for parent in list(module.modules()):
            if not isinstance(parent, nn.Sequential):
                continue  # elsewhere the order of children says nothing about the calls
            children = list(parent.named_children())
            for (_, conv), (name, bn) in zip(children, children[1:], strict=False):
                if foldable(conv, bn):
                    fold(conv, bn)
                    setattr(parent, name, nn.Identity())
                    folded[type(conv).__name__] += 1
        if not folded:  # a `skipped` row with this reason, not a row claiming a change
            raise NotApplicable("fuse-bn: no convolution followed by a BatchNorm2d")
        into = ", ".join(f"{n} BatchNorm2d into {kind}" for kind, n in sorted(folded.items()))
        note = f"folded {into}"
        return art.evolve(module=module, notes=(*art.notes, note))
