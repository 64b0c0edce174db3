"""Sparsity passes: unstructured magnitude sparsity, and 2:4 semi-structured sparsity.

``sparsity:R``
    Unstructured L1 magnitude pruning of every conv / linear weight (``R`` of each layer's
    weights set to zero, made permanent). The zeros stay in dense tensors, so dense kernels do
    exactly the same work: expect no speedup. ``sparsity`` alone means ``sparsity:0.5``.

``sparse24``
    2:4 semi-structured sparsity for ``nn.Linear`` weights with
    ``torch.sparse.to_sparse_semi_structured``: sparse tensor cores, NVIDIA GPUs with compute
    capability >= 8.0, fp16/bf16 weights (put ``fp16`` or ``bf16`` first).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bench.core.artifact import Artifact, TorchArtifact
from bench.core.device import Device
from bench.core.errors import NotApplicable
from optimizers.base import Pass, PassContext, RatioPass, compiled_refusal, register_pass
from optimizers.pruning import PRUNABLE_WEIGHTS, human_count
from optimizers.state import ArtifactState

_SPARSE24_REASON = "2:4 semi-structured sparse kernels need an NVIDIA GPU with compute capability >= 8.0"


def sparsify_unstructured(module: nn.Module, ratio: float) -> tuple[int, int]:
    """Zero the ``ratio`` smallest-|w| weights of every conv / linear layer, permanently.

    Returns (zeros, total) over those weights.
    """
    from torch.nn.utils import prune

    zeros = total = 0
    for layer in module.modules():
        if isinstance(layer, PRUNABLE_WEIGHTS) and isinstance(getattr(layer, "weight", None), torch.Tensor):
            prune.l1_unstructured(layer, name="weight", amount=ratio)
            prune.remove(layer, "weight")
            zeros += int((layer.weight == 0).sum())
            total += layer.weight.numel()
    return zeros, total


@register_pass
class Sparsity(RatioPass):
    """Unstructured magnitude sparsity: the weights become zeros, the kernels stay dense.

    Dense conv / matmul kernels skip nothing, so latency and FLOPs stay those of the dense
    model (the harness counts FLOPs on the module as it runs, zeros included): the row shows
    the cost of sparsity without sparse kernels, and its fidelity.
    """

    name = "sparsity"
    summary = "unstructured L1 magnitude sparsity of conv/linear weights (dense kernels: no speedup)"

    def refuses(self, state: ArtifactState) -> str | None:
        if state.compiled:
            return compiled_refusal(self.name)
        if state.sparse24:
            return "sparsity cannot change 2:4 semi-structured weights: put sparsity before sparse24, or drop one"
        return super().refuses(state)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        module = copy.deepcopy(art.module)
        with torch.no_grad():
            zeros, total = sparsify_unstructured(module, self.ratio)
        if total == 0:
            raise NotApplicable("sparsity: the model has no conv or linear weights to sparsify")
        note = (
            f"{zeros / total:.1%} of conv/linear weights are zero ({human_count(zeros)}/{human_count(total)}); "
            "dense kernels: no speedup expected"
        )
        return art.evolve(module=module, notes=(*art.notes, note))


# ------------------------------------------------------------------------- 2:4 semi-structured
def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the 2 largest-|w| of every 4 consecutive weights along the input dim."""
    rows, cols = weight.shape
    if cols % 4:
        raise ValueError(f"2:4 sparsity needs a multiple of 4 input features, got {cols}")
    groups = weight.detach().abs().reshape(rows, cols // 4, 4)
    top = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return mask.reshape(rows, cols)


def _sparse24_shape_ok(weight: torch.Tensor) -> bool:
    # The strictest of torch's two backends (CUTLASS, fp16/bf16): rows a multiple of 32, columns of 64.
    rows, cols = weight.shape
    return rows >= 32 and rows % 32 == 0 and cols >= 64 and cols % 64 == 0


@register_pass
class Sparse24(Pass):
    """2:4 semi-structured sparsity of ``nn.Linear`` weights for sparse tensor cores.

    Every Linear whose weight meets the kernel shape constraints (rows multiple of 32, columns
    multiple of 64) is pruned to a 2:4 mask by magnitude (2 largest |w| of each 4 along the input
    dim) and replaced by ``torch.sparse.to_sparse_semi_structured(weight)``; the module then runs
    the sparse kernels through ``F.linear``. Convolutions are left dense (no im2col rewrite), so
    on conv-dominated models (all the reference models) the effect is small; the note says how
    much of the weights was converted.

    NOT RUN in development: the machine had no GPU, so only ``applies_to`` (the CPU refusal) and
    the 2:4 mask were tested; ``apply`` is written against the documented API
    (https://pytorch.org/tutorials/prototype/semi_structured_sparse.html) and is untested.
    """

    name = "sparse24"
    summary = "2:4 semi-structured sparse Linear weights (CUDA, compute capability >= 8.0, fp16/bf16)"

    def available(self) -> str | None:
        if getattr(torch.sparse, "to_sparse_semi_structured", None) is None:
            return f"torch {torch.__version__} has no torch.sparse.to_sparse_semi_structured"
        return None

    def applies_to(self, device: Device) -> str | None:
        if not device.is_cuda:
            return _SPARSE24_REASON
        major, minor = torch.cuda.get_device_capability(device.torch_name)
        if (major, minor) < (8, 0):
            return f"{_SPARSE24_REASON}; this GPU is {major}.{minor}"
        if major != 8 and not torch.backends.cusparselt.is_available():
            return (
                f"this torch build has no cuSPARSELt, and its CUTLASS 2:4 kernels run on compute "
                f"capability 8.x only (this GPU is {major}.{minor})"
            )
        return self.available()

    def refuses(self, state: ArtifactState) -> str | None:
        if state.compiled:
            return compiled_refusal(self.name)
        if state.sparse24:
            return "sparse24 appears twice: its weights are already 2:4 sparse"
        if state.precision not in ("fp16", "bf16"):
            return "sparse24 needs fp16 or bf16 weights: put fp16 or bf16 before it (e.g. fp16+sparse24)"
        return super().refuses(state)

    def after(self, state: ArtifactState) -> ArtifactState:
        return state.evolve(sparse24=True)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

        # torch picks cuSPARSELt unless told otherwise; builds without it have the CUTLASS kernels.
        backend = "cusparselt" if torch.backends.cusparselt.is_available() else "cutlass"
        SparseSemiStructuredTensor._FORCE_CUTLASS = backend == "cutlass"
        module = copy.deepcopy(art.module)
        converted = skipped = 0
        sparse_weights = total_weights = 0
        for layer in module.modules():
            weight = getattr(layer, "weight", None)
            if isinstance(weight, torch.Tensor) and isinstance(layer, PRUNABLE_WEIGHTS):
                total_weights += weight.numel()
            if not isinstance(layer, nn.Linear):
                continue
            if not weight.is_cuda or not _sparse24_shape_ok(weight):
                skipped += 1
                continue
            with torch.no_grad():
                pruned = (weight * mask_2_4(weight)).contiguous()
                layer.weight = nn.Parameter(to_sparse_semi_structured(pruned), requires_grad=False)
            converted += 1
            sparse_weights += weight.numel()
        if converted == 0:
            raise NotApplicable(
                f"sparse24: none of the {skipped} Linear layers meets the 2:4 kernel shape constraints "
                "(rows multiple of 32, columns multiple of 64)"
            )
        share = sparse_weights / total_weights if total_weights else 0.0
        note = (
            f"2:4 sparse ({backend}): {converted} Linear layers ({share:.1%} of conv/linear weights); "
            f"{skipped} left dense"
        )
        return art.evolve(module=module, notes=(*art.notes, note))
