"""Importing this module registers every built-in pass.

Each module imports its heavy library (onnxruntime, torch_pruning, tensorrt)
inside the pass that needs it, so registering them all stays cheap.
"""

from optimizers import (
    onnx_passes,  # noqa: F401
    pruning,  # noqa: F401
    quantize,  # noqa: F401
    tensorrt_pass,  # noqa: F401
    torch_passes,  # noqa: F401
)
