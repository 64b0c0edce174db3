"""A user's model that runs eagerly but that torch.export refuses: its output's sign decides the branch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        if y.sum() > 0:  # control flow on a tensor's value: no graph holds both branches
            return y
        return -y


def data_dependent() -> tuple[nn.Module, Callable[[int], tuple[torch.Tensor, ...]]]:
    return DataDependent(), lambda batch: (torch.randn(batch, 8),)
