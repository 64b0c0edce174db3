"""How much arithmetic one forward call does and how many bytes it moves, per item and per call.

Both are counted from traces of the model at batch 1 and batch 2, so each splits into
a per-item part and a batch-independent part (``X(b) = per_item * b + fixed``); a
row's figures at its own batch follow, and so do a projection's at any other batch,
from the results table alone.

- FLOPs: ``torch.utils.flop_counter`` (matmul, convolution and attention kernels,
  multiply and add counted separately; elementwise ops are not counted, as in every
  FLOP convention for these models).
- Bytes moved (``TrafficTrace``): a ``TorchDispatchMode`` sees every aten op. Each
  op's outputs are counted as written once and read once (2x their elements); views
  move nothing; in-place ops rewrite their tensor (2x as well). Weights (parameters
  and buffers) are read once per call and inputs once. This ignores caches: it is the
  traffic of a machine with no reuse across ops, an upper bound (a GPU's L2 or a fused
  kernel moves less), and it counts attention's score matrix as materialized (flash
  kernels do not). Counts are in elements; bytes follow from the row's precision
  (``bench.core.precision.ELEMENT_BYTES``), because an exported or quantized pipeline
  runs the same graph at another element size.
- Activation memory: the peak of live op outputs during the call, plus the inputs.

The trace runs on the meta device (parameters swapped for meta tensors with
``torch.func.functional_call``, nothing copied, no real compute), so counting a base
model costs milliseconds; a module that cannot run on meta (a custom model calling
``.item()``, say) is traced on its own device instead.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.core.columns import RowPart
from bench.core.precision import ELEMENT_BYTES

MB = 1e6
InputsAt = Callable[[int], tuple[torch.Tensor, ...]]


class TrafficTrace:
    """Counts elements written by op outputs and the peak of live outputs, via a TorchDispatchMode."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        trace = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                trace.n_ops += 1
                returns = func._schema.returns
                if any(r.alias_info is not None and not r.alias_info.is_write for r in returns):
                    return out  # a view: nothing moves
                written_in_place = any(r.alias_info is not None for r in returns)
                for t in tree_flatten(out)[0]:
                    if not isinstance(t, torch.Tensor):
                        continue
                    elems = t.numel()
                    trace.written += elems
                    if not written_in_place:  # in-place rewrites memory already counted as live
                        trace.live += elems
                        trace.peak = max(trace.peak, trace.live)
                        weakref.finalize(t, trace._free, elems)
                return out

        self.mode = Mode()
        self.written = 0
        self.live = 0
        self.peak = 0
        self.n_ops = 0

    def _free(self, elems: int) -> None:
        self.live -= elems


@dataclass(frozen=True)
class Work:
    """Counts of one forward call, split as ``per_item * batch + fixed`` (elements and FLOPs)."""

    flops_per_item: float
    flops_fixed: float
    moved_elems_per_item: float  # inputs + 2 x op outputs, per item
    moved_elems_fixed: float  # weights (read once per call) + 2 x batch-independent op outputs
    live_elems_per_item: float  # peak live op outputs + inputs, per item
    live_elems_fixed: float
    weight_elems: float
    traced_on: str  # "meta" or the device the module ran on

    def at(self, batch: int, precision: str) -> WorkPerItem:
        """The row's figures at ``batch``, with bytes in ``precision``'s element size (NaN if unknown)."""
        size = ELEMENT_BYTES.get(precision, math.nan)
        return WorkPerItem(
            gflops_per_item=(self.flops_per_item + self.flops_fixed / batch) / 1e9,
            mb_moved_per_item=size * (self.moved_elems_per_item + self.moved_elems_fixed / batch) / MB,
            mb_moved_fixed=size * self.moved_elems_fixed / MB,
            activation_mb_per_item=size * self.live_elems_per_item / MB,
            activation_mb_fixed=size * self.live_elems_fixed / MB,
        )


@dataclass(frozen=True)
class WorkPerItem(RowPart):
    """A cell's work columns: what `project` reads to bound any other device's throughput and memory."""

    gflops_per_item: float
    mb_moved_per_item: float  # at the row's batch: (per-item part) + mb_moved_fixed / batch
    mb_moved_fixed: float
    activation_mb_per_item: float
    activation_mb_fixed: float

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "gflops_per_item", "mb_moved_per_item", "mb_moved_fixed", "activation_mb_per_item", "activation_mb_fixed",
    )  # fmt: skip


def _trace_once(module: nn.Module, inputs: tuple[torch.Tensor, ...], meta: bool) -> tuple[int, TrafficTrace]:
    """One traced call. The meta weights and inputs are made before the modes start: made inside,
    they would count as op outputs (weights written, read and live three times over)."""
    flops = FlopCounterMode(display=False)
    trace = TrafficTrace()
    if meta:
        state = {name: torch.empty_like(t, device="meta") for name, t in _state(module)}
        meta_inputs = tuple(t.to("meta") for t in inputs)
        with torch.inference_mode(), flops, trace.mode:
            out = torch.func.functional_call(module, state, meta_inputs)
    else:
        with torch.inference_mode(), flops, trace.mode:
            out = module(*inputs)
    del out
    return int(flops.get_total_flops()), trace


def count_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward call on ``inputs``, on the device they are on (a one-off count)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(*inputs)
    return int(counter.get_total_flops())


def _state(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(), *module.named_buffers()]


def measure_work(module: nn.Module, inputs_at: InputsAt) -> Work:
    """Trace ``module`` at batch 1 and 2 (``inputs_at(b)``: the inputs of one call at batch b, as the
    module takes them): on the meta device, or on the module's own device where meta cannot run it."""
    try:
        return trace_work(module, inputs_at, where=None)
    except Exception:  # cannot run on meta: data-dependent Python, tensors outside the state dict
        home = next((t.device for _, t in _state(module)), torch.device("cpu"))
        return trace_work(module, inputs_at, where=home)


def trace_work(module: nn.Module, inputs_at: InputsAt, where: torch.device | None) -> Work:
    """The traces at batch 1 and 2, on the meta device (``where`` None) or on ``where``."""
    counts: dict[int, tuple[int, TrafficTrace, float]] = {}
    for batch in (1, 2):
        inputs = inputs_at(batch)
        if where is not None:
            inputs = tuple(t.to(where) for t in inputs)
        flops, trace = _trace_once(module, inputs, meta=where is None)
        counts[batch] = (flops, trace, float(sum(t.numel() for t in inputs)))
    (f1, t1, i1), (f2, t2, i2) = counts[1], counts[2]

    def per_item_and_fixed(one: float, two: float) -> tuple[float, float]:
        return two - one, max(0.0, 2 * one - two)

    flops_item, flops_fixed = per_item_and_fixed(f1, f2)
    written_item, written_fixed = per_item_and_fixed(t1.written, t2.written)
    live_item, live_fixed = per_item_and_fixed(t1.peak, t2.peak)
    inputs_item = i2 - i1
    weights = float(sum(t.numel() for _, t in _state(module)))
    return Work(
        flops_per_item=flops_item,
        flops_fixed=flops_fixed,
        moved_elems_per_item=inputs_item + 2.0 * written_item,
        moved_elems_fixed=weights + 2.0 * written_fixed,
        live_elems_per_item=live_item + inputs_item,
        live_elems_fixed=live_fixed,
        weight_elems=weights,
        traced_on="meta" if where is None else str(where),
    )
