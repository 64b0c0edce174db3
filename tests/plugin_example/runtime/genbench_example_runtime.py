"""example-xla: the shape of a runtime plugin for a compiler stack genbench does not ship (torch_xla, Neuron).

Two entry points make a stack usable in a run: a pass that turns the torch model
into the stack's artifact (``genbench.passes``), and a runtime that runs artifacts
of that kind (``genbench.runtimes``, keyed by the artifact's ``kind``). This one is
a stand-in that runs on the CPU with plain torch, so it can be tested anywhere; each
step says what a torch_xla plugin would do there. Nothing here has run on a TPU.
After ``pip install .`` it runs as ``python -m bench run --pipelines fp32,example-xla``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from optimizers import Artifact, Pass, PassContext, TorchArtifact

KIND = "example-xla"  # the artifact kind: the pass makes it, the runtime's entry point is named after it


@dataclass(frozen=True)
class ExampleXlaArtifact:
    """What the pass hands to the runtime: the module, its precision and the notes for the row."""

    module: nn.Module
    precision: str = "fp32"
    notes: tuple[str, ...] = ()
    kind: str = field(default=KIND, init=False)

    def evolve(self, **changes: Any) -> ExampleXlaArtifact:
        return replace(self, **changes)

    def stored_bytes(self) -> int:
        """Bytes of the weights as stored, for the row's model_bytes column."""
        return sum(t.numel() * t.element_size() for t in self.module.state_dict().values())


class ExampleXlaLowering(Pass):
    name = KIND  # the name in --pipelines
    consumes = ("torch",)
    produces = KIND
    summary = "hand the model to the example-xla runtime (a CPU stand-in for a torch_xla plugin)"

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        # torch_xla: module = art.module.to(torch_xla.device()), compiled lazily on its first call
        note = "example-xla: CPU stand-in, no XLA device"
        return ExampleXlaArtifact(module=art.module, precision=art.precision, notes=(*art.notes, note))


class ExampleXlaRuntime:
    """Runs example-xla artifacts: ``prepare`` (untimed) places the inputs, ``run`` is the timed call."""

    runtime_name = "example-xla (CPU stand-in)"  # the row's runtime column
    allocates_through_torch = True  # torch's memory counters see its allocations

    def __init__(self, artifact: ExampleXlaArtifact, device: Any) -> None:
        self.module = artifact.module

    @staticmethod
    def unavailable(device: Any) -> str | None:
        """Why it cannot run on ``device`` (None: it can); asked before a cell is built, so the cell is skipped."""
        # torch_xla: return None if the torch_xla package imports and finds a device, else the reason
        return None if device.kind == "cpu" else "the example-xla stand-in runs on the CPU only"

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        # torch_xla: tuple(t.to(torch_xla.device()) for t in inputs)
        return tuple(inputs)

    def run(self, prepared: tuple[torch.Tensor, ...]) -> Any:
        with torch.inference_mode():
            output = self.module(*prepared)
        # torch_xla: torch_xla.sync() here, so the timed call includes the device's work, not just tracing
        return output

    def to_torch(self, output: Any) -> torch.Tensor:
        tensor = output if isinstance(output, torch.Tensor) else output[0]
        return tensor.detach().float().cpu()  # torch_xla: .cpu() copies it back from the device
