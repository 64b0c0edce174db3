"""Runtimes execute an artifact: eager torch, ONNX Runtime, TensorRT, OpenVINO (see ``base`` for the contract).

Importing the package registers the built-in runtimes; each imports its heavy
library (onnxruntime, tensorrt, openvino) only when it loads an artifact.
"""

from bench.runtimes import openvino, ort, tensorrt, torch_eager  # noqa: F401  (register the built-in runtimes)
from bench.runtimes.base import (
    ENTRY_POINT_GROUP,
    RUNTIMES,
    LoadedModel,
    all_runtimes,
    first_tensor,
    load,
    load_entry_points,
    register_runtime,
    runtime_notes,
    runtime_unavailable,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "RUNTIMES",
    "LoadedModel",
    "all_runtimes",
    "first_tensor",
    "load",
    "load_entry_points",
    "register_runtime",
    "runtime_notes",
    "runtime_unavailable",
]
