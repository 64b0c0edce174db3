"""What a deployed model takes and gives: each tensor's name, shape and dtype, read from the artifact itself.

The manifest and the Triton configuration are both written from this one
description, so they cannot disagree. It is read from the exported file (the
ONNX graph's declared inputs and outputs) rather than from the torch module the
export started from: the exporter may rename, drop or retype a tensor, and what a
server feeds is what the file declares. A dimension is an int when fixed and a
string (the exporter's symbol, e.g. ``"batch"``) when the file leaves it free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: dtype names as numpy writes them, the form the manifest uses; ONNX's TensorProto names -> them
_ONNX_DTYPES: dict[str, str] = {
    "FLOAT": "float32",
    "FLOAT16": "float16",
    "BFLOAT16": "bfloat16",
    "DOUBLE": "float64",
    "INT64": "int64",
    "INT32": "int32",
    "INT16": "int16",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}
_TORCH_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float64: "float64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the deployed model."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str

    @property
    def batched(self) -> bool:
        """Whether its first axis is left free by the file: the axis a server batches along."""
        return bool(self.shape) and isinstance(self.shape[0], str)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batched(self) -> bool:
        """Every tensor has a free first axis, so a server may stack requests along it."""
        return all(t.batched for t in (*self.inputs, *self.outputs))

    def to_json(self) -> dict[str, Any]:
        return {"inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}


def onnx_signature(path: Path) -> Signature:
    """The graph's declared inputs and outputs (initializers listed as inputs by old exporters left out).

    The weights are not loaded (``load_external_data=False``): only the graph's declarations are read.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}

    def spec(value: Any) -> TensorSpec:
        tensor_type = value.type.tensor_type
        elem = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        dims: list[Dim] = []
        for i, dim in enumerate(tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            else:
                dims.append(dim.dim_param or f"dim{i}")
        return TensorSpec(value.name, tuple(dims), _ONNX_DTYPES.get(elem, elem.lower()))

    inputs = tuple(spec(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(spec(v) for v in model.graph.output)
    return Signature(inputs, outputs)


def torch_dtype_name(dtype: torch.dtype) -> str:
    return _TORCH_DTYPES.get(dtype, str(dtype).removeprefix("torch."))


def tensor_specs(
    tensors: tuple[torch.Tensor, ...], names: list[str], batch_symbol: str | None
) -> tuple[TensorSpec, ...]:
    """Specs of example tensors; with ``batch_symbol``, their first axis is the free batch axis."""
    specs = []
    for name, tensor in zip(names, tensors, strict=True):
        shape: list[Dim] = list(tensor.shape)
        if batch_symbol is not None and shape:
            shape[0] = batch_symbol
        specs.append(TensorSpec(name, tuple(shape), torch_dtype_name(tensor.dtype)))
    return tuple(specs)
