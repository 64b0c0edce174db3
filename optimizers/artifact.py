"""Where plugins written for earlier versions import artifacts from; they now live in ``bench.core.artifact``.

Artifacts are the contract between passes and runtimes, so they moved to core,
which both import; this module keeps ``from optimizers.artifact import
TorchArtifact`` working for third-party passes.
"""

from bench.core.artifact import (
    ARTIFACT_KINDS,
    Artifact,
    OnnxArtifact,
    OpenVinoArtifact,
    TensorRTArtifact,
    TorchArtifact,
    present_inputs,
)

__all__ = [
    "ARTIFACT_KINDS",
    "Artifact",
    "OnnxArtifact",
    "OpenVinoArtifact",
    "TensorRTArtifact",
    "TorchArtifact",
    "present_inputs",
]
