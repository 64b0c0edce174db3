"""Optimization passes: artifact in, artifact out, registered by name.

Importing the package registers the built-in passes (one module per family);
heavy libraries (onnxruntime, tensorrt, torch_pruning) are imported inside the
passes that need them. Third-party passes come in through the
``genbench.passes`` entry-point group, loaded on the first lookup.
"""

from bench.core.artifact import Artifact, OnnxArtifact, TensorRTArtifact, TorchArtifact
from bench.core.errors import NotApplicable, PipelineError
from optimizers import onnx_passes, pruning, quantize, tensorrt_pass, torch_passes  # noqa: E402, F401, I001
from optimizers.registry import (
    ENTRY_POINT_GROUP,
    PASSES,
    Pass,
    PassContext,
    Pipeline,
    all_passes,
    parse_pipeline,
    register_pass,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PASSES",
    "Artifact",
    "NotApplicable",
    "OnnxArtifact",
    "Pass",
    "PassContext",
    "Pipeline",
    "PipelineError",
    "TensorRTArtifact",
    "TorchArtifact",
    "all_passes",
    "parse_pipeline",
    "register_pass",
]
