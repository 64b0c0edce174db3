"""Pruning passes: structured channel pruning, unstructured magnitude sparsity, 2:4 sparsity.

``prune:R``
    Structured channel pruning with Torch-Pruning's dependency graph (DepGraph): channels are
    physically removed from every coupled layer, so the dense kernels have less work to do and
    the FLOPs are recounted. Magnitude (group L2) importance, the same ratio ``R`` in every
    coupled group ("uniform", what gives a predictable speedup); ``prune`` alone means
    ``prune:0.5``. How the graph is kept small and correct:

    * it is traced on a batch-1 slice of the example inputs: the graph does not depend on the
      batch, but the cost of the traced (autograd-recording) forward and the activations it keeps
      grow with it;
    * the conv/linear layers that produce the model output are ignored (output shape preserved);
      the first layer's input channels are never pruned (DepGraph has no producer to prune);
    * GroupNorm: Torch-Pruning's group-aware pruning removes the same positions from every
      group, so ``num_groups`` is kept and every channel count stays divisible by it (this is
      also why ``round_to`` is not used: in Torch-Pruning 1.6 it is applied to the per-group
      count against the whole channel count, which on grouped layers rounds the pruning away:
      UNet small at 0.3 kept 6.18M of 6.47M params with round_to=8, 1.73M without). The cost is
      granularity: GroupNorm(32) over 64 channels can only lose 0, 32 or 64, and Torch-Pruning
      keeps floor((1 - R) * n) per group, so ``prune:0.3`` removes more than 30% there (the
      note gives the share achieved). A GroupNorm over a skip concatenation whose narrowest
      input has under two channels per group (tiny sizes) would make that input unprunable;
      its constraint is lifted and, like every group, the group is checked before it is pruned
      and left whole if any GroupNorm would end up with channels not divisible by its groups;
    * self-attention: DepGraph traces SDPA's math path as element-wise ops and cannot follow a
      fused qkv split on the token axis, and the reference blocks reshape the attention output to
      ``x.shape``, which ties the inner width to the residual width (left to DepGraph, the pruned
      UNet fails in that reshape). Blocks with the reference layout (``norm``, ``qkv`` or
      ``q``/``k``/``v``, ``proj_out``, a residual add) get a customized pruner (Torch-Pruning's
      ``customized_pruners``) that prunes the block like a normalization layer: the residual
      channels the rest of the graph chose, plus as many inner (head) dims, chosen by their own
      magnitude. Any other attention found in the traced graph (softmax / SDPA nodes) has every
      layer of its enclosing module ignored, which is safe: its residual width stays whole.

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
import functools
import math
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.core.artifact import Artifact, TorchArtifact
from bench.core.device import Device
from bench.core.errors import NotApplicable, PipelineError
from bench.core.optional import missing
from optimizers.registry import Pass, PassContext, register_pass

DEFAULT_RATIO = 0.5

_PRUNABLE_WEIGHTS = (nn.Linear, nn.modules.conv._ConvNd)
_ATTENTION_OPS = ("softmax", "attention")  # autograd node names of attention cores (math path / fused SDPA)
_MATMUL_OPS = ("bmm", "mmbackward", "matmul")
_SPARSE24_REASON = "2:4 semi-structured sparse kernels need an NVIDIA GPU with compute capability >= 8.0"


# ---------------------------------------------------------------------------------------- helpers
def _parse_ratio(pass_name: str, arg: str | None) -> float:
    """``arg`` as a ratio in (0, 1); None gives DEFAULT_RATIO; anything else is a PipelineError."""
    if arg is None:
        return DEFAULT_RATIO
    try:
        ratio = float(arg)
    except ValueError:
        raise PipelineError(
            f"{pass_name} ratio must be a number in (0, 1), e.g. {pass_name}:0.3 (got {arg!r})"
        ) from None
    if not math.isfinite(ratio) or not 0.0 < ratio < 1.0:
        raise PipelineError(f"{pass_name} ratio must be in (0, 1), e.g. {pass_name}:0.3 (got {arg!r})")
    return ratio


def _eager_torch(artifact: Artifact, pass_name: str) -> TorchArtifact:
    if not isinstance(artifact, TorchArtifact):
        raise PipelineError(
            f"{pass_name} needs a torch model, got a {artifact.kind} artifact: put {pass_name} first"
        )
    if artifact.compiled:
        raise PipelineError(f"{pass_name} cannot change a compiled module: put {pass_name} before compile")
    return artifact


def _count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(int(n))


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def trace_inputs(inputs: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """A batch-1 slice of ``inputs`` on ``device``: what DepGraph needs to see every op once.

    Tensors whose first dimension is the batch (that of the first input) are sliced; others
    (scalars, shared tables) pass unchanged.
    """
    batch = inputs[0].shape[0] if inputs and inputs[0].dim() > 0 else None
    out = []
    for t in inputs:
        if batch is not None and t.dim() > 0 and t.shape[0] == batch:
            t = t[:1]
        out.append(t.to(device))
    return tuple(out)


def torch_pruning_missing() -> str | None:
    return missing("torch_pruning")


# ------------------------------------------------------------------------- attention blocks
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
def _attention_pruner_class() -> type:
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


# ------------------------------------------------------------------------- graph analysis
@dataclass
class GraphPlan:
    """What the traced graph says about a model: layers to leave alone, attention handled."""

    output_layers: list[nn.Module] = field(default_factory=list)
    opaque_attention: list[str] = field(default_factory=list)  # unknown layouts: their layers are ignored
    ignored: list[nn.Module] = field(default_factory=list)


def _grad_name(node: Any) -> str:
    fn = getattr(node, "grad_fn", None)
    return fn.name().lower() if fn is not None and hasattr(fn, "name") else ""


def _walk_to_layers(start: Iterable[Any], stop: tuple[type, ...], forward: bool = False) -> Iterator[Any]:
    """Modules of type ``stop`` first met walking the graph from ``start`` (without crossing them)."""
    stack, seen = list(start), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, stop):
            yield node.module
            continue
        stack.extend(node.outputs if forward else node.inputs)


def _common_owner(model: nn.Module, layers: Iterable[nn.Module]) -> tuple[str, nn.Module]:
    names = {id(m): n for n, m in model.named_modules()}
    parts = [names[id(layer)].split(".")[:-1] for layer in layers if id(layer) in names]
    if not parts:
        return "", model
    prefix = parts[0]
    for p in parts[1:]:
        i = 0
        while i < min(len(prefix), len(p)) and prefix[i] == p[i]:
            i += 1
        prefix = prefix[:i]
    name = ".".join(prefix)
    return name, (model.get_submodule(name) if name else model)


def attention_block_types(model: nn.Module) -> tuple[type, ...]:
    """Module classes every instance of which has the reference attention layout."""
    found: dict[type, bool] = {}
    for m in model.modules():
        ok = attention_layout(m) is not None
        if ok or type(m) in found:
            found[type(m)] = found.get(type(m), True) and ok
    return tuple(cls for cls, ok in found.items() if ok)


def inspect_graph(model: nn.Module, graph: Any, block_types: tuple[type, ...]) -> GraphPlan:
    """Output layers, and attention not covered by ``block_types``, in a traced DependencyGraph."""
    plan = GraphPlan()
    # the graph is traced back from the model's outputs, so the nodes nothing consumes are those
    sinks = [n for n in graph.module2node.values() if not n.outputs]
    for layer in _walk_to_layers(sinks, _PRUNABLE_WEIGHTS):
        if layer not in plan.output_layers:
            plan.output_layers.append(layer)

    for module, node in graph.module2node.items():
        if isinstance(module, block_types) and "add" not in _grad_name(node):
            name = graph._module2name.get(module, type(module).__name__)
            raise PipelineError(
                f"prune: attention block {name} has no residual connection; cannot prune it whole"
            )

    seen_owners: set[int] = set()
    for node in list(graph.module2node.values()):
        name = _grad_name(node)
        if not any(op in name for op in _ATTENTION_OPS):
            continue
        downstream = list(_walk_to_layers([node], (*_PRUNABLE_WEIGHTS, *block_types), forward=True))
        if downstream and all(isinstance(m, block_types) for m in downstream):
            continue  # inside a block the customized pruner handles whole
        sources = list(node.inputs)
        if "softmax" in name:  # math path: v enters at the matmul after the softmax
            frontier, hops = list(node.outputs), 0
            while frontier and hops < 4:
                nxt = []
                for n in frontier:
                    if any(op in _grad_name(n) for op in _MATMUL_OPS):
                        sources.extend(n.inputs)
                    else:
                        nxt.extend(n.outputs)
                frontier, hops = nxt, hops + 1
        projections = list(dict.fromkeys(_walk_to_layers(sources, _PRUNABLE_WEIGHTS)))
        if not projections:
            continue
        owner_name, owner = _common_owner(model, [*projections, *downstream])
        if id(owner) in seen_owners:
            continue
        seen_owners.add(id(owner))
        if owner is model:
            raise PipelineError(
                "prune: found attention whose projections are not inside one sub-module; "
                "cannot keep its head structure consistent"
            )
        plan.opaque_attention.append(owner_name)
        plan.ignored.extend(m for m in owner.modules() if isinstance(m, _PRUNABLE_WEIGHTS))
    return plan


# ------------------------------------------------------------------------- structured pruning
@dataclass(frozen=True)
class PruneReport:
    """What one structured pruning did: channels (root widths of DepGraph groups), params, time."""

    ratio: float
    prunable_channels: int
    removed_channels: int
    groups: int
    groups_kept_for_norm: int
    channels_kept_for_norm: int
    params_before: int
    params_after: int
    trace_s: float
    prune_s: float
    attention_blocks: int
    opaque_attention: tuple[str, ...]

    @property
    def share(self) -> float:
        """Removed / all prunable channels (groups left whole for GroupNorm included)."""
        return self.removed_channels / self.prunable_channels if self.prunable_channels else 0.0

    @property
    def share_of_pruned_groups(self) -> float:
        """Removed / channels of the groups that were pruned: the ratio as applied."""
        base = self.prunable_channels - self.channels_kept_for_norm
        return self.removed_channels / base if base else 0.0

    def notes(self) -> tuple[str, ...]:
        notes = [
            f"pruned {self.share:.1%} of prunable channels ({self.removed_channels}/{self.prunable_channels} "
            f"in {self.groups} groups; ratio {self.ratio:g} per group, L2 magnitude); "
            f"params {_human(self.params_before)} -> {_human(self.params_after)}",
            f"dependency graph traced at batch 1 in {self.trace_s:.1f}s, pruned in {self.prune_s:.1f}s",
        ]
        if abs(self.share_of_pruned_groups - self.ratio) > 0.05:
            notes.append(
                "share differs from the ratio: channels go in whole steps of their GroupNorm's group count "
                "(where there is one) and Torch-Pruning keeps floor((1 - ratio) * n) per group"
            )
        if self.attention_blocks:
            notes.append(
                f"{self.attention_blocks} attention blocks pruned whole (residual + as many head dims)"
            )
        if self.opaque_attention:
            notes.append(f"attention left unpruned (unknown layout): {', '.join(self.opaque_attention)}")
        if self.groups_kept_for_norm:
            notes.append(
                f"{self.groups_kept_for_norm} groups ({self.channels_kept_for_norm} channels) left whole to keep "
                f"GroupNorm channel counts divisible by their groups; {self.share_of_pruned_groups:.1%} of the others pruned"
            )
        return tuple(notes)


def _breaks_group_norm(group: Any) -> bool:
    """True if pruning ``group`` would leave a GroupNorm whose channels are not a multiple of its groups."""
    for dep, idxs in group:
        norm = dep.target.module
        if isinstance(norm, nn.GroupNorm):
            left = norm.num_channels - len(idxs)
            if left <= 0 or left % norm.num_groups:
                return True
    return False


def _narrow_concat_norms(graph: Any) -> list[nn.Module]:
    """GroupNorms over a concatenation with an input narrower than two channels per norm group.

    Torch-Pruning gives every group that reaches a GroupNorm that norm's group count, so each
    input of a skip concatenation must drop channels in whole multiples of the *joint* norm's
    groups. That is right when each input spans at least two channels per group (every
    reference model at small/base: GroupNorm(32) over 64+ channels), but makes a narrow input
    (tiny: 16 channels under GroupNorm(16, 48)) unprunable. For those norms the constraint is
    lifted and :func:`_breaks_group_norm` checks the joint count instead.
    """
    found = []
    for module, node in graph.module2node.items():
        if not isinstance(module, nn.GroupNorm):
            continue
        for src in node.inputs:
            sizes = (
                getattr(src.module, "concat_sizes", None)
                if type(src.module).__name__ == "_ConcatOp"
                else None
            )
            if sizes and min(sizes) < 2 * module.num_groups:
                found.append(module)
                break
    return found


def prune_channels(model: nn.Module, inputs: tuple[torch.Tensor, ...], ratio: float) -> PruneReport:
    """Structured magnitude pruning of ``model`` in place (callers pass a copy).

    ``inputs`` must be on the model's device; a batch of one is enough and is cheapest (see
    :func:`trace_inputs`). Works whatever the caller's grad mode; ``requires_grad`` flags and
    train/eval mode come back as they were.
    """
    was_training = model.training
    needs_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(True)  # DepGraph traces the autograd graph
    try:
        with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"torch_pruning(\..*)?")
            return _prune_traced(model, inputs, ratio)
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(needs_grad.get(name, False))
        model.train(was_training)


def _prune_traced(model: nn.Module, inputs: tuple[torch.Tensor, ...], ratio: float) -> PruneReport:
    """The pruning itself, in grad mode.

    One DepGraph trace: reference attention blocks are recognized by their layout and given the
    customized pruner up front; output layers and attention of other layouts are read off the
    traced graph and added to the pruner's ignored layers before it ranks anything.
    """
    import torch_pruning as tp

    params_before = _count_params(model)
    block_types = attention_block_types(model)
    t0 = time.perf_counter()
    pruner_cls = getattr(tp.pruner, "BasePruner", None) or tp.pruner.MagnitudePruner
    pruner = pruner_cls(
        model,
        example_inputs=inputs,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        global_pruning=False,
        customized_pruners={cls: _attention_pruner_class()() for cls in block_types},
        # fresh dicts: Torch-Pruning fills these in place, and its defaults are shared mutable dicts
        in_channel_groups={},
        out_channel_groups={},
        num_heads={},
    )
    trace_s = time.perf_counter() - t0
    graph = pruner.DG
    plan = inspect_graph(model, graph, block_types)
    for layer in (*plan.output_layers, *plan.ignored):
        pruner.ignored_layers.extend(m for m in layer.modules() if m not in pruner.ignored_layers)
    for norm in _narrow_concat_norms(graph):
        pruner.in_channel_groups.pop(norm, None)
        pruner.out_channel_groups.pop(norm, None)

    t1 = time.perf_counter()
    prunable = n_groups = 0
    for group in graph.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        prunable += graph.get_out_channels(group[0].dep.target.module) or 0
        n_groups += 1
    removed = kept_groups = kept_channels = 0
    for group in pruner.step(interactive=True):
        if _breaks_group_norm(group):
            root = group[0].dep.target.module
            kept_groups += 1
            kept_channels += graph.get_out_channels(root) or 0
            continue
        removed += len(group[0].idxs)
        group.prune()
    n_blocks = sum(isinstance(m, block_types) for m in graph.module2node)
    return PruneReport(
        ratio=ratio,
        prunable_channels=prunable,
        removed_channels=removed,
        groups=n_groups,
        groups_kept_for_norm=kept_groups,
        channels_kept_for_norm=kept_channels,
        params_before=params_before,
        params_after=_count_params(model),
        trace_s=trace_s,
        prune_s=time.perf_counter() - t1,
        attention_blocks=n_blocks,
        opaque_attention=tuple(plan.opaque_attention),
    )


@register_pass
class Prune(Pass):
    """Structured channel pruning with Torch-Pruning (see the module docstring for the rules).

    Runs on the fp32 eager module, so it must come first in a pipeline: ``prune:0.5+bf16``,
    ``prune:0.3+onnx``. The pruned network has random-init-quality weights for its new shape
    (no fine-tuning), so its fidelity to the reference is low; the speed is what it measures.
    """

    name = "prune"
    summary = "structured channel pruning (Torch-Pruning DepGraph, L2 magnitude); prune:R removes R of each channel group"
    changes_work = True

    def __init__(self, arg: str | None = None) -> None:
        self.ratio = _parse_ratio(self.name, arg)
        self.arg = arg

    def available(self) -> str | None:
        return torch_pruning_missing()

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = _eager_torch(artifact, self.name)
        if art.precision != "fp32" or any(p.dtype != torch.float32 for p in art.module.parameters()):
            raise PipelineError(
                f"prune works on the fp32 model: put prune first (e.g. prune:{self.ratio:g}+bf16)"
            )
        reason = torch_pruning_missing()
        if reason is not None:
            raise PipelineError(reason)
        module = copy.deepcopy(art.module)
        report = prune_channels(module, trace_inputs(ctx.example_inputs, _module_device(module)), self.ratio)
        if art.channels_last:
            module = module.to(memory_format=torch.channels_last)  # pruned weights come back contiguous
        return art.evolve(module=module, notes=(*art.notes, *report.notes()))


# ------------------------------------------------------------------------- unstructured sparsity
def sparsify_unstructured(module: nn.Module, ratio: float) -> tuple[int, int]:
    """Zero the ``ratio`` smallest-|w| weights of every conv / linear layer, permanently.

    Returns (zeros, total) over those weights.
    """
    from torch.nn.utils import prune

    zeros = total = 0
    for layer in module.modules():
        if isinstance(layer, _PRUNABLE_WEIGHTS) and isinstance(getattr(layer, "weight", None), torch.Tensor):
            prune.l1_unstructured(layer, name="weight", amount=ratio)
            prune.remove(layer, "weight")
            zeros += int((layer.weight == 0).sum())
            total += layer.weight.numel()
    return zeros, total


@register_pass
class Sparsity(Pass):
    """Unstructured magnitude sparsity: the weights become zeros, the kernels stay dense.

    Dense conv / matmul kernels skip nothing, so latency and FLOPs stay those of the dense
    model (``changes_work`` is False): the row shows the cost of sparsity without sparse
    kernels, and its fidelity.
    """

    name = "sparsity"
    summary = "unstructured L1 magnitude sparsity of conv/linear weights (dense kernels: no speedup)"
    changes_work = False

    def __init__(self, arg: str | None = None) -> None:
        self.ratio = _parse_ratio(self.name, arg)
        self.arg = arg

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = _eager_torch(artifact, self.name)
        module = copy.deepcopy(art.module)
        with torch.no_grad():
            zeros, total = sparsify_unstructured(module, self.ratio)
        if total == 0:
            raise NotApplicable("sparsity: the model has no conv or linear weights to sparsify")
        note = (
            f"{zeros / total:.1%} of conv/linear weights are zero ({_human(zeros)}/{_human(total)}); "
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
    changes_work = False  # FLOPs stay the dense count; sparse tensor cores skip half of them

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

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = _eager_torch(artifact, self.name)
        if art.precision not in ("fp16", "bf16"):
            raise PipelineError(
                "sparse24 needs fp16 or bf16 weights: put fp16 or bf16 before it (e.g. fp16+sparse24)"
            )
        from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

        # torch picks cuSPARSELt unless told otherwise; builds without it have the CUTLASS kernels.
        backend = "cusparselt" if torch.backends.cusparselt.is_available() else "cutlass"
        SparseSemiStructuredTensor._FORCE_CUTLASS = backend == "cutlass"
        module = copy.deepcopy(art.module)
        converted = skipped = 0
        sparse_weights = total_weights = 0
        for layer in module.modules():
            weight = getattr(layer, "weight", None)
            if isinstance(weight, torch.Tensor) and isinstance(layer, _PRUNABLE_WEIGHTS):
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
