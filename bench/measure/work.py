"""How much arithmetic one forward call does, counted by torch's FLOP counter."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs (multiply and add counted separately) of one forward call on ``inputs``.

    Counts matmul, convolution and attention kernels (what dominates these models);
    elementwise ops are not counted, as in every FLOP convention for these models.
    """
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(*inputs)
    return int(counter.get_total_flops())
