"""What an artifact is, as far as the order of passes is concerned.

A pipeline is checked before any model is built by walking these states from
the fp32 torch model: each pass says which states it refuses and which state it
leaves (``Pass.refuses`` / ``Pass.after``). At run time the same state is read
off the real artifact (``ArtifactState.of``), so a pass applied by hand is
refused for the same reason, worded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from bench.core.artifact import TorchArtifact

#: the class torch gives 2:4 semi-structured weights (absent from old torch builds)
_SEMI_STRUCTURED = getattr(torch.sparse, "SparseSemiStructuredTensor", None)


@dataclass(frozen=True)
class ArtifactState:
    """The facts about an artifact that decide which passes may follow it.

    ``kind`` is the artifact kind (torch, onnx, tensorrt); ``precision`` its
    weights' precision (fp32, fp16, bf16, int8, mixed). The torch-only facts are
    False for every other kind: ``compiled`` (torch.compile, a CUDA graph or
    pt2e-int8 wrapped the module, so its layers can no longer be changed or
    exported), ``channels_last`` (NHWC weights and inputs) and ``sparse24``
    (Linear weights are 2:4 semi-structured tensors, which only torch kernels run).
    """

    kind: str = "torch"
    precision: str = "fp32"
    compiled: bool = False
    channels_last: bool = False
    sparse24: bool = False

    def evolve(self, **changes: Any) -> ArtifactState:
        return replace(self, **changes)

    @classmethod
    def of(cls, artifact: Any) -> ArtifactState:
        """The state of a real artifact (any object with a ``kind``; third-party kinds included)."""
        precision = getattr(artifact, "precision", "fp32")
        if not isinstance(artifact, TorchArtifact):
            return cls(kind=artifact.kind, precision=precision)
        sparse = _SEMI_STRUCTURED is not None and any(
            isinstance(p, _SEMI_STRUCTURED) for p in artifact.module.parameters()
        )
        return cls(
            kind="torch",
            precision=precision,
            compiled=artifact.compiled,
            channels_last=artifact.channels_last,
            sparse24=sparse,
        )
