"""Importing this module registers every built-in pass.

Each module imports its heavy library (onnxruntime, torch_pruning, tensorrt)
inside the pass that needs it, so registering them all stays cheap.
"""

from optimizers import torch_passes  # noqa: F401
