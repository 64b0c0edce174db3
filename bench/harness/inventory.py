"""Static facts about a model at a size: params, FLOPs per item, input and output shapes.

Counted on the meta device, so `bench list` describes even the base models in a
second without allocating their weights or running a real forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.measure.work import measure_work
from reference_models.spec import ModelSpec


@dataclass(frozen=True)
class ModelInfo:
    params: int
    gflops_per_item: float
    input_shapes: str
    output_shape: str


def _shape(t: torch.Tensor) -> str:
    dtype = str(t.dtype).removeprefix("torch.")
    shape = "x".join(str(d) for d in t.shape)
    return shape if dtype == "float32" else f"{shape} {dtype}"


def describe_model(spec: ModelSpec, size: str) -> ModelInfo:
    module = spec.build(size)
    params = sum(p.numel() for p in module.parameters())
    inputs = spec.example_inputs(1, size, 0)
    work = measure_work(module, lambda batch: spec.example_inputs(batch, size, 0)).at(1, "fp32")
    meta_module = module.to("meta")
    with torch.inference_mode():
        output = meta_module(*(t.to("meta") for t in inputs))
    out = output if isinstance(output, torch.Tensor) else output[0]
    return ModelInfo(
        params=params,
        gflops_per_item=work.gflops_per_item,
        input_shapes=", ".join(_shape(t) for t in inputs),
        output_shape=_shape(out),
    )
