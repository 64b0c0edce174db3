"""The attention-block pruner ``prune`` uses for self-attention of the reference layout.

DepGraph traces SDPA's math path as element-wise ops and cannot follow a fused qkv split on the
token axis, and the reference blocks reshape the attention output to ``x.shape``, which ties the
inner width to the residual width (left to DepGraph, the pruned UNet fails in that reshape).
Blocks with the reference layout (``norm``, ``qkv`` or ``q``/``k``/``v``, ``proj_out``, a
residual add) get a customized pruner (Torch-Pruning's ``customized_pruners``) that prunes the
block like a normalization layer: the residual channels the rest of the graph chose, plus as
many inner (head) dims, chosen by their own magnitude. Attention of any other layout is found in
the traced graph by ``optimizers.pruning`` and left whole.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AttentionLayout:
    """Where the parameters of a residual single-head self-attention block live.

    ``projections`` are the q/k/v layers (one fused ``qkv`` layer of 3C outputs, or three);
    ``out`` projects the attention output back to the residual width, ``norm`` normalizes the
    block input. All are Conv (1x1) or Linear layers, whose weights are (out, in, ...).
    """

    norm: nn.Module
    projections: tuple[nn.Module, ...]
    out: nn.Module

    @property
    def fused(self) -> bool:
        return len(self.projections) == 1


def _width(layer: nn.Module, dim: int) -> int | None:
    if isinstance(layer, nn.Linear):
        return layer.out_features if dim == 0 else layer.in_features
    if isinstance(layer, nn.modules.conv._ConvNd) and not isinstance(layer, nn.modules.conv._ConvTransposeNd):
        if layer.groups != 1:
            return None
        return layer.out_channels if dim == 0 else layer.in_channels
    return None


def attention_layout(block: nn.Module) -> AttentionLayout | None:
    """The layout of a reference-style attention block (``norm``, ``qkv`` or ``q``/``k``/``v``,
    ``proj_out``, all one width C), or None when the block is laid out otherwise."""
    norm = getattr(block, "norm", None)
    out = getattr(block, "proj_out", None)
    if not isinstance(norm, nn.GroupNorm | nn.LayerNorm | nn.modules.batchnorm._BatchNorm) or out is None:
        return None
    if isinstance(norm, nn.GroupNorm):
        c = norm.num_channels
    elif isinstance(norm, nn.LayerNorm):
        if len(norm.normalized_shape) != 1:
            return None
        c = norm.normalized_shape[0]
    else:
        c = norm.num_features
    if _width(out, 0) != c or _width(out, 1) != c:
        return None
    qkv = getattr(block, "qkv", None)
    if qkv is not None:
        if _width(qkv, 1) != c or _width(qkv, 0) != 3 * c:
            return None
        return AttentionLayout(norm, (qkv,), out)
    projs = tuple(getattr(block, name, None) for name in ("q", "k", "v"))
    if all(p is not None and _width(p, 0) == c and _width(p, 1) == c for p in projs):
        return AttentionLayout(norm, projs, out)  # type: ignore[arg-type]
    return None


def _keep_index(n: int, drop: Iterable[int]) -> torch.Tensor:
    dropped = {int(i) for i in drop}
    return torch.tensor([i for i in range(n) if i not in dropped], dtype=torch.long)


def _select(param: nn.Parameter | None, dim: int, keep: torch.Tensor) -> nn.Parameter | None:
    if param is None:
        return None
    data = torch.index_select(param.data, dim, keep.to(param.device)).contiguous()
    return nn.Parameter(data, requires_grad=param.requires_grad)


def _shrink(layer: nn.Module, dim: int, keep: torch.Tensor) -> None:
    """Keep ``keep`` along ``dim`` (0 = outputs, 1 = inputs) of a conv / linear / norm layer."""
    layer.weight = _select(layer.weight, dim, keep)
    if dim == 0 and getattr(layer, "bias", None) is not None:
        layer.bias = _select(layer.bias, 0, keep)
    n = len(keep)
    if isinstance(layer, nn.Linear):
        if dim == 0:
            layer.out_features = n
        else:
            layer.in_features = n
    elif isinstance(layer, nn.modules.conv._ConvNd):
        if dim == 0:
            layer.out_channels = n
        else:
            layer.in_channels = n
    elif isinstance(layer, nn.GroupNorm):
        layer.num_channels = n
    elif isinstance(layer, nn.LayerNorm):
        layer.normalized_shape = (n,)
    elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
        layer.num_features = n
        for name in ("running_mean", "running_var"):
            buf = getattr(layer, name)
            if buf is not None:
                setattr(layer, name, torch.index_select(buf, 0, keep.to(buf.device)))


def prune_attention_block(block: nn.Module, idxs: Iterable[int]) -> nn.Module:
    """Remove residual channels ``idxs`` from a reference attention block, and as many inner dims.

    The residual channels (norm, q/k/v inputs, output projection outputs) are the ones the rest
    of the graph chose; the inner dims (q/k/v outputs, output projection inputs) are chosen by
    their own L2 magnitude, the same set for q, k and v as single-head attention needs. Their
    count equals the residual count because the block reshapes its output to ``x.shape``.
    """
    layout = attention_layout(block)
    if layout is None:
        raise RuntimeError(f"{type(block).__name__} does not have the attention layout this pruner expects")
    c = _width(layout.out, 0)
    assert c is not None
    keep = _keep_index(c, idxs)
    _shrink(layout.norm, 0, keep)
    for proj in layout.projections:
        _shrink(proj, 1, keep)
    _shrink(layout.out, 0, keep)
    with torch.no_grad():
        if layout.fused:
            rows = layout.projections[0].weight.detach().float().flatten(1).pow(2).sum(1)
            inner = rows.view(3, c).sum(0)
        else:
            inner = sum(p.weight.detach().float().flatten(1).pow(2).sum(1) for p in layout.projections)
        inner = inner + layout.out.weight.detach().float().transpose(0, 1).flatten(1).pow(2).sum(1)
        inner_keep = torch.sort(torch.argsort(inner, descending=True)[: len(keep)]).values.cpu()
    if layout.fused:
        _shrink(layout.projections[0], 0, torch.cat([inner_keep + i * c for i in range(3)]))
    else:
        for proj in layout.projections:
            _shrink(proj, 0, inner_keep)
    _shrink(layout.out, 1, inner_keep)
    return block


@functools.cache
def attention_pruner_class() -> type:
    """A Torch-Pruning layer pruner for reference attention blocks (built lazily: imports torch_pruning)."""
    import torch_pruning as tp

    class AttentionBlockPruner(tp.pruner.BasePruningFunc):
        """Treats a residual attention block like a normalization layer: in = out channels."""

        TARGET_MODULES = None

        def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
            return prune_attention_block(layer, idxs)

        prune_in_channels = prune_out_channels  # intra-layer dependency: in and out are one dimension

        def get_out_channels(self, layer: nn.Module) -> int | None:
            layout = attention_layout(layer)
            return None if layout is None else _width(layout.out, 0)

        get_in_channels = get_out_channels

        def get_out_channel_groups(self, layer: nn.Module) -> int:
            norm = getattr(layer, "norm", None)
            return norm.num_groups if isinstance(norm, nn.GroupNorm) else 1

        get_in_channel_groups = get_out_channel_groups

    return AttentionBlockPruner


def attention_block_types(model: nn.Module) -> tuple[type, ...]:
    """Module classes every instance of which has the reference attention layout."""
    found: dict[type, bool] = {}
    for m in model.modules():
        ok = attention_layout(m) is not None
        if ok or type(m) in found:
            found[type(m)] = found.get(type(m), True) and ok
    return tuple(cls for cls, ok in found.items() if ok)
