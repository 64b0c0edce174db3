"""What every cell of one (model, size, batch) is compared against: the fp32 eager model, inputs and output.

Models are built once per (model, size) and kept on the CPU between cells; on a
GPU each cell gets its own device copy (``device_copy``), so one cell's
device-memory peak holds that cell's model and nothing left from another. Cells
are planned model-major, so only one model is resident at a time.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.core.artifact import present_inputs
from bench.core.device import Device
from bench.core.text import slug
from bench.harness.plan import Cell
from bench.runtimes import first_tensor

#: calibration batches are drawn with seeds this far from the timed inputs' seed, so they never coincide
CALIBRATION_SEED_OFFSET = 1000

Batches = Callable[[int], Iterator[tuple[torch.Tensor, ...]]]


@dataclass(frozen=True)
class Reference:
    module: nn.Module  # the fp32 model as built, on the CPU
    inputs: tuple[torch.Tensor, ...]  # the timed inputs, on the CPU
    output: torch.Tensor  # the fp32 eager output on those inputs, fp32 on the CPU


class References:
    """Builds and caches the fp32 reference of each (model, size, batch) of a run."""

    def __init__(self, device: Device, seed: int) -> None:
        self.device = device
        self.seed = seed
        self._modules: dict[tuple[str, str], nn.Module] = {}
        self._references: dict[tuple[str, str, int], Reference] = {}
        self._workload: dict[tuple[str, str, int, str], dict[str, torch.Tensor]] = {}

    def base_module(self, cell: Cell) -> nn.Module:
        key = (cell.spec.name, cell.size)
        if key not in self._modules:
            self._modules.clear()  # one model resident at a time: cells are model-major
            self._references.clear()
            self._workload.clear()
            self._modules[key] = cell.spec.build(cell.size)
        return self._modules[key]

    def device_copy(self, module: nn.Module) -> nn.Module:
        return module if not self.device.is_cuda else copy.deepcopy(module).to(self.device.torch_name)

    def get(self, cell: Cell) -> Reference:
        key = (cell.spec.name, cell.size, cell.batch_size)
        if key not in self._references:
            module = self.base_module(cell)
            on_device = self.device_copy(module)
            inputs = cell.spec.example_inputs(cell.batch_size, cell.size, self.seed)
            placed = present_inputs(inputs, self.device.torch_name, torch.float32, False)
            with strict_fp32(self.device), torch.inference_mode():
                output = first_tensor(on_device(*placed)).detach().float().cpu()
            del on_device
            self._references[key] = Reference(module, inputs, output)
        return self._references[key]

    def workload_reference(
        self, cell: Cell, variant: str, compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """What the fp32 model gives for a generate or sample cell (its tokens and logits, its image).

        ``variant`` names what besides (model, size, batch) the reference depends on
        (prompt and new-token counts, steps, guidance); ``compute`` makes it, once, as
        CPU tensors.
        """
        key = (cell.spec.name, cell.size, cell.batch_size, variant)
        if key not in self._workload:
            self.base_module(cell)  # drops another model's references first
            self._workload[key] = compute()
        return self._workload[key]

    def calibration(self, cell: Cell) -> Batches:
        """n input batches for calibrating passes, drawn with seeds disjoint from the timed inputs'."""

        def batches(n: int) -> Iterator[tuple[torch.Tensor, ...]]:
            for i in range(n):
                yield cell.spec.example_inputs(
                    cell.batch_size, cell.size, self.seed + CALIBRATION_SEED_OFFSET + i
                )

        return batches


@contextlib.contextmanager
def strict_fp32(device: Device) -> Iterator[None]:
    """Compute the reference in true fp32: TF32 off on CUDA so fidelity measures the pipeline alone."""
    if not device.is_cuda:
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


class SharedReferences(References):
    """References kept as files in ``folder``, so every worker process of a run compares against the same one.

    The first worker to need a (model, size, batch) computes it and saves inputs and
    output there (``torch.save`` of a dict of tensors, written to a temp file and
    renamed); later workers load it with ``torch.load(weights_only=True)``, which
    unpickles tensors and plain containers only: nothing from the file can run code.
    The module itself is rebuilt from its spec in each worker (seeded, so identical).
    """

    def __init__(self, device: Device, seed: int, folder: Path) -> None:
        super().__init__(device, seed)
        self.folder = folder

    def path(self, cell: Cell, variant: str = "") -> Path:
        # the slug for people, a hash of the exact name so that a.b:f and a_b:f never share a file
        digest = hashlib.sha256(f"{cell.spec.name}|{variant}".encode()).hexdigest()[:8]
        name = f"{slug(cell.spec.name)}-{digest}-{cell.size}-b{cell.batch_size}-seed{self.seed}.pt"
        return self.folder / name

    def workload_reference(
        self, cell: Cell, variant: str, compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        key = (cell.spec.name, cell.size, cell.batch_size, variant)
        if key in self._workload:
            return self._workload[key]
        path = self.path(cell, variant)
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            self._workload[key] = saved
            return saved
        reference = super().workload_reference(cell, variant, compute)
        self._save(path, reference)
        return reference

    @staticmethod
    def _save(path: Path, tensors: dict[str, object]) -> None:
        """Written to a temp file and renamed: a worker killed mid-write leaves no half file."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(tensors, tmp)
        os.replace(tmp, path)

    def get(self, cell: Cell) -> Reference:
        key = (cell.spec.name, cell.size, cell.batch_size)
        if key in self._references:
            return self._references[key]
        path = self.path(cell)
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            reference = Reference(self.base_module(cell), tuple(saved["inputs"]), saved["output"])
            self._references[key] = reference
            return reference
        reference = super().get(cell)
        self._save(path, {"inputs": list(reference.inputs), "output": reference.output})
        return reference
