"""Custom models that fail the way native code fails, at one batch size only (3), for the isolation tests.

Batch 3, because the work trace runs every model at batches 1 and 2 on the meta device,
and only real (CPU) tensors trigger the fault.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import torch
from torch import nn

FAULT_BATCH = 3
_LEAK: list[torch.Tensor] = []


class _Faulty(nn.Module):
    def __init__(self, fault: Callable[[], None]) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)
        self.fault = fault

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.shape[0] == FAULT_BATCH:
            self.fault()
        return self.linear(x)


def _factory(fault: Callable[[], None]) -> tuple[nn.Module, Callable[[int], tuple[torch.Tensor, ...]]]:
    return _Faulty(fault), lambda batch: (torch.randn(batch, 8),)


def segfault():  # noqa: ANN201
    return _factory(lambda: os.kill(os.getpid(), signal.SIGSEGV))


def sigkill():  # noqa: ANN201
    return _factory(lambda: os.kill(os.getpid(), signal.SIGKILL))


def hang():  # noqa: ANN201
    def forever() -> None:
        while True:
            time.sleep(1)

    return _factory(forever)


def exits():  # noqa: ANN201
    def leave() -> None:
        raise SystemExit(3)

    return _factory(leave)


def leaks_2gib():  # noqa: ANN201
    """Holds 2 GiB (touched, so resident) from its first call at batch 3 on, in a module global."""

    def hold() -> None:
        if not _LEAK:
            _LEAK.append(torch.ones(2**31, dtype=torch.uint8))

    return _factory(hold)
