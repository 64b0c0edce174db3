"""Optimization passes: artifact in, artifact out, registered by name, checked in order before anything runs.

Importing the package registers the built-in passes (one module per family);
heavy libraries (onnxruntime, openvino, nncf, tensorrt, torch_pruning) are imported inside the
passes that need them. Third-party passes come in through the
``genbench.passes`` entry-point group, loaded on the first lookup. From Python:
``Pipeline.of(Prune(ratio=0.5), Int8())`` is ``parse_pipeline("prune:0.5+int8")``.
"""

from bench.core.artifact import Artifact, OnnxArtifact, TensorRTArtifact, TorchArtifact
from bench.core.errors import NotApplicable, PipelineError
from optimizers import (  # noqa: F401, I001
    onnx_passes,
    openvino_passes,
    pruning,
    quantize,
    sparsity,
    tensorrt_pass,
    torch_passes,
    torchao_passes,
)
from optimizers.onnx_passes import Onnx, Ort
from optimizers.openvino_passes import OpenVino, OvInt8
from optimizers.pruning import Prune
from optimizers.quantize import Int8, Int8Dynamic, Pt2eInt8
from optimizers.registry import (
    ENTRY_POINT_GROUP,
    PASSES,
    ArtifactState,
    Pass,
    PassContext,
    Pipeline,
    all_passes,
    parse_pipeline,
    register_pass,
)
from optimizers.sparsity import Sparse24, Sparsity
from optimizers.tensorrt_pass import TensorRT
from optimizers.torch_passes import Bf16, ChannelsLast, Compile, CudaGraph, Fp16, Fp32
from optimizers.torchao_passes import Int4WeightOnly, Int8DynamicActivation, Int8WeightOnly

__all__ = [
    "ENTRY_POINT_GROUP",
    "PASSES",
    "Artifact",
    "ArtifactState",
    "Bf16",
    "ChannelsLast",
    "Compile",
    "CudaGraph",
    "Fp16",
    "Fp32",
    "Int4WeightOnly",
    "Int8",
    "Int8Dynamic",
    "Int8DynamicActivation",
    "Int8WeightOnly",
    "NotApplicable",
    "OnnxArtifact",
    "Onnx",
    "OpenVino",
    "Ort",
    "OvInt8",
    "Pass",
    "PassContext",
    "Pipeline",
    "PipelineError",
    "Prune",
    "Pt2eInt8",
    "Sparse24",
    "Sparsity",
    "TensorRT",
    "TensorRTArtifact",
    "TorchArtifact",
    "all_passes",
    "parse_pipeline",
    "register_pass",
]
