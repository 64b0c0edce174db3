"""Run a torch module (eager or torch.compile'd) under inference mode."""

from __future__ import annotations

from typing import Any

import torch

from bench.core.artifact import TorchArtifact, present_inputs
from bench.core.device import Device
from bench.runtimes.base import first_tensor, register_runtime


@register_runtime("torch")
class TorchRuntime:
    allocates_through_torch = True

    def __init__(self, artifact: TorchArtifact, device: Device) -> None:
        self.artifact = artifact
        self.device = device
        self.runtime_name = "torch-compiled" if artifact.compiled else "torch-eager"

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        art = self.artifact
        return present_inputs(inputs, self.device.torch_name, art.input_dtype, art.channels_last)

    def run(self, prepared: tuple[torch.Tensor, ...]) -> Any:
        with torch.inference_mode():
            return self.artifact.module(*prepared)

    def to_torch(self, output: Any) -> torch.Tensor:
        return first_tensor(output).detach().float().cpu()
