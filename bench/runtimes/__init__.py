"""Runtimes execute an artifact: eager torch, ONNX Runtime, TensorRT.

A runtime splits a forward call into what is timed and what is not:
``prepare`` places inputs (on the device, in the right dtype/format) once,
``run`` is the timed call, ``to_torch`` turns an output into an fp32 CPU tensor
for the fidelity check. Each backend imports its library inside itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from bench.core.device import Device
    from optimizers.artifact import Artifact


class LoadedModel(Protocol):
    #: what ran it, for the `runtime` column, e.g. "torch-eager" or "onnxruntime:CPUExecutionProvider"
    runtime_name: str
    #: whether its device memory is torch's (then torch's peak counters cover it) or its own
    allocates_through_torch: bool

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Any: ...

    def run(self, prepared: Any) -> Any: ...

    def to_torch(self, output: Any) -> torch.Tensor: ...


def first_tensor(output: Any) -> torch.Tensor:
    """Models may return a tensor, a tuple/list, or a dict; the first tensor is the image."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"model output has no tensor (got {type(output).__name__})")


def load(artifact: Artifact, device: Device) -> LoadedModel:
    """Pick the runtime from the artifact's kind."""
    if artifact.kind == "torch":
        from bench.runtimes.torch_eager import TorchRuntime

        return TorchRuntime(artifact, device)  # type: ignore[arg-type]
    if artifact.kind == "onnx":
        from bench.runtimes.ort import OrtRuntime

        return OrtRuntime(artifact, device)  # type: ignore[arg-type]
    if artifact.kind == "tensorrt":
        from bench.runtimes.tensorrt import TensorRTRuntime

        return TensorRTRuntime(artifact, device)  # type: ignore[arg-type]
    raise ValueError(f"no runtime for artifact kind {artifact.kind!r}")
