"""What a pass hands to the next: a torch module, an ONNX file, a TensorRT engine or an OpenVINO IR.

The contract between passes (``optimizers/``), which make artifacts, and runtimes
(``bench/runtimes/``), which run them: it lives in core so that neither side
imports the other to know it. Artifacts are frozen: a pass builds a new one (and
a new module) rather than changing the one it was given, so the fp32 reference
stays intact and cells cannot leak state into each other. Each artifact knows
how many bytes it takes as stored (``stored_bytes``), so the harness never needs
to know an artifact's file layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class TorchArtifact:
    """An eager (or compiled) torch module plus how its inputs must be presented.

    ``input_dtype`` is applied to floating-point inputs only (a UNet's integer
    timesteps stay integers); ``channels_last`` converts 4-D inputs.
    """

    module: nn.Module
    precision: str = "fp32"
    input_dtype: torch.dtype = torch.float32
    channels_last: bool = False
    compiled: bool = False
    notes: tuple[str, ...] = ()
    kind: str = field(default="torch", init=False)

    def evolve(self, **changes: Any) -> TorchArtifact:
        return replace(self, **changes)

    def stored_bytes(self) -> int:
        """Bytes of the module's state as stored: parameters and persistent buffers (a bf16 module's are 2
        per element, an int8 weight-only one's its int8 data and scales).

        Non-persistent buffers are left out: they are working memory the module makes for itself
        (a KV cache, rotary tables), not part of the model a user stores. A tensor tied to another
        (an embedding shared with the output head) counts once.
        """
        seen: set[tuple[int, int]] = set()
        total = 0
        for tensor in self.module.state_dict(keep_vars=True).values():
            total += tensor_bytes(tensor, seen)
        return total


def tensor_bytes(tensor: torch.Tensor, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes a tensor holds: its elements, or for a tensor subclass (torchao's quantized weights) the
    inner tensors it is made of (``__tensor_flatten__``). Storage already in ``seen`` is not counted again."""
    seen = set() if seen is None else seen
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name), seen) for name in names)
    if tensor.device.type == "meta":
        return tensor.numel() * tensor.element_size()
    key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
    if key in seen:
        return 0
    seen.add(key)
    return tensor.numel() * tensor.element_size()


def _file_bytes(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


@dataclass(frozen=True)
class OnnxArtifact:
    """An ONNX model on disk and the runtime options chosen for it.

    ``provider`` is an onnxruntime execution-provider short name ("cpu", "cuda",
    "trt"), or None to pick from the device at load time.
    """

    path: Path
    precision: str = "fp32"
    exporter: str = ""
    provider: str | None = None
    notes: tuple[str, ...] = ()
    #: whether onnxruntime's pool threads may busy-wait after a call (its default): off in a server
    #: load, whose load generator and batcher share the cores (bench.runtimes.ort)
    spinning: bool = True
    kind: str = field(default="onnx", init=False)

    def evolve(self, **changes: Any) -> OnnxArtifact:
        return replace(self, **changes)

    @property
    def external_data_path(self) -> Path:
        """Where weights beyond protobuf's 2 GiB limit go: ``<model>.onnx.data`` beside the model."""
        return self.path.with_name(self.path.name + ".data")

    def files(self) -> tuple[Path, ...]:
        """The model file and, when it has one, its external weights."""
        return tuple(p for p in (self.path, self.external_data_path) if p.is_file())

    def stored_bytes(self) -> int:
        return _file_bytes(*self.files())


@dataclass(frozen=True)
class TensorRTArtifact:
    """A serialized TensorRT engine on disk."""

    path: Path
    precision: str = "fp32"
    notes: tuple[str, ...] = ()
    kind: str = field(default="tensorrt", init=False)

    def evolve(self, **changes: Any) -> TensorRTArtifact:
        return replace(self, **changes)

    def stored_bytes(self) -> int:
        return _file_bytes(self.path)


@dataclass(frozen=True)
class OpenVinoArtifact:
    """An OpenVINO IR model on disk (``.xml`` with its ``.bin`` weights) and how the CPU plugin is to run it.

    ``precision`` is the weights' (fp32, or int8 after NNCF); ``inference_precision`` is what the CPU
    plugin computes the ops that are not quantized in (``f32`` or ``bf16``), set explicitly because the
    plugin's own default is bf16 wherever the CPU has AVX512-BF16 or AMX, which would make a plain
    "fp32" OpenVINO row a bf16 one on some machines and not others. ``performance_hint`` is OpenVINO's
    ``LATENCY`` (one stream: single-stream and server cells) or ``THROUGHPUT`` (several streams, the
    batch split over parallel requests: offline cells). ``source`` says what it was converted from.
    """

    path: Path
    precision: str = "fp32"
    inference_precision: str = "f32"
    performance_hint: str = "LATENCY"
    source: str = "torch"
    notes: tuple[str, ...] = ()
    kind: str = field(default="openvino", init=False)

    def evolve(self, **changes: Any) -> OpenVinoArtifact:
        return replace(self, **changes)

    @property
    def weights_path(self) -> Path:
        return self.path.with_suffix(".bin")

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.path, self.weights_path) if p.is_file())

    def stored_bytes(self) -> int:
        return _file_bytes(*self.files())


Artifact = TorchArtifact | OnnxArtifact | TensorRTArtifact | OpenVinoArtifact
ARTIFACT_KINDS: tuple[str, ...] = ("torch", "onnx", "tensorrt", "openvino")


def present_inputs(
    inputs: tuple[torch.Tensor, ...], device: torch.device | str, dtype: torch.dtype, channels_last: bool
) -> tuple[torch.Tensor, ...]:
    """Put inputs where and how a torch artifact expects them: device, float dtype, memory format."""
    out = []
    for t in inputs:
        t = t.to(device)
        if t.is_floating_point():
            t = t.to(dtype)
            if channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
        out.append(t)
    return tuple(out)
