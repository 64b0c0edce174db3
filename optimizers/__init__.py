"""Optimization passes: artifact in, artifact out, registered by name.

Import-light on purpose: the built-in passes are registered on first use of
``all_passes``/``parse_pipeline``, and heavy libraries (onnxruntime, tensorrt,
torch_pruning) are imported inside the passes that need them.
"""

from optimizers.artifact import Artifact, OnnxArtifact, TensorRTArtifact, TorchArtifact
from optimizers.registry import (
    ENTRY_POINT_GROUP,
    PASSES,
    Pass,
    PassContext,
    Pipeline,
    PipelineError,
    all_passes,
    parse_pipeline,
    register_pass,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PASSES",
    "Artifact",
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
