"""Structured channel pruning (``prune:R``): the Torch-Pruning glue, the graph analysis and the pass.

Torch-Pruning's dependency graph (DepGraph) finds the coupled layers; channels are
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
* self-attention: blocks with the reference layout are pruned whole by the customized pruner of
  ``optimizers.attention_pruning`` (why: see there). Any other attention found in the traced graph
  (softmax / SDPA nodes) has every layer of its enclosing module ignored, which is safe: its
  residual width stays whole.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.core.artifact import Artifact, TorchArtifact
from bench.core.errors import PipelineError
from bench.core.optional import missing
from optimizers.attention_pruning import attention_block_types, attention_pruner_class
from optimizers.base import PassContext, RatioPass, compiled_refusal, register_pass
from optimizers.state import ArtifactState

PRUNABLE_WEIGHTS = (nn.Linear, nn.modules.conv._ConvNd)
_ATTENTION_OPS = ("softmax", "attention")  # autograd node names of attention cores (math path / fused SDPA)
_MATMUL_OPS = ("bmm", "mmbackward", "matmul")


def _count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def human_count(n: float) -> str:
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


def inspect_graph(model: nn.Module, graph: Any, block_types: tuple[type, ...]) -> GraphPlan:
    """Output layers, and attention not covered by ``block_types``, in a traced DependencyGraph."""
    plan = GraphPlan()
    # the graph is traced back from the model's outputs, so the nodes nothing consumes are those
    sinks = [n for n in graph.module2node.values() if not n.outputs]
    for layer in _walk_to_layers(sinks, PRUNABLE_WEIGHTS):
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
        downstream = list(_walk_to_layers([node], (*PRUNABLE_WEIGHTS, *block_types), forward=True))
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
        projections = list(dict.fromkeys(_walk_to_layers(sources, PRUNABLE_WEIGHTS)))
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
        plan.ignored.extend(m for m in owner.modules() if isinstance(m, PRUNABLE_WEIGHTS))
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
            f"params {human_count(self.params_before)} -> {human_count(self.params_after)}",
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
        customized_pruners={cls: attention_pruner_class()() for cls in block_types},
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
class Prune(RatioPass):
    """Structured channel pruning with Torch-Pruning (see the module docstring for the rules).

    Runs on the fp32 eager module, so it must come first in a pipeline: ``prune:0.5+bf16``,
    ``prune:0.3+onnx``. The pruned network has random-init-quality weights for its new shape
    (no fine-tuning), so its fidelity to the reference is low; the speed is what it measures.
    """

    name = "prune"
    summary = "structured channel pruning (Torch-Pruning DepGraph, L2 magnitude); prune:R removes R of each channel group"

    def available(self) -> str | None:
        return torch_pruning_missing()

    def refuses(self, state: ArtifactState) -> str | None:
        if state.compiled:
            return compiled_refusal(self.name)
        if state.precision != "fp32":
            return f"prune works on the fp32 model: put prune first (e.g. prune:{self.ratio:g}+{state.precision})"
        return super().refuses(state)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        reason = torch_pruning_missing()
        if reason is not None:
            raise PipelineError(reason)
        module = copy.deepcopy(art.module)
        report = prune_channels(module, trace_inputs(ctx.example_inputs, _module_device(module)), self.ratio)
        if art.channels_last:
            module = module.to(memory_format=torch.channels_last)  # pruned weights come back contiguous
        return art.evolve(module=module, notes=(*art.notes, *report.notes()))
