"""Run a TensorRT engine on torch CUDA tensors with `execute_async_v3` (TensorRT 10 API).

Inputs and outputs live in torch-allocated device memory; tensor addresses are
bound once in `prepare`, so the timed call is only the enqueue on torch's current
stream (the event timer records on that same stream). Not run on real hardware
yet: TensorRT is not installed on the machines this project has had.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.devices import Device
from optimizers.artifact import TensorRTArtifact

_TRT_TO_TORCH = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}


class TensorRTRuntime:
    runtime_name = "tensorrt"

    def __init__(self, artifact: TensorRTArtifact, device: Device) -> None:
        import tensorrt as trt

        if not device.is_cuda:
            raise ValueError("TensorRT engines run on CUDA devices only")
        self.device = device
        self.trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(artifact.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"could not deserialize TensorRT engine {artifact.path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def _dtype(self, name: str) -> torch.dtype:
        return _TRT_TO_TORCH[self.engine.get_tensor_dtype(name).name]

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        bound: dict[str, torch.Tensor] = {}
        for name, tensor in zip(self.inputs, inputs, strict=True):
            placed = tensor.to(self.device.torch_name, self._dtype(name)).contiguous()
            self.context.set_input_shape(name, tuple(placed.shape))
            self.context.set_tensor_address(name, placed.data_ptr())
            bound[name] = placed
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self._dtype(name), device=self.device.torch_name)
            self.context.set_tensor_address(name, out.data_ptr())
            bound[name] = out
        return bound

    def run(self, prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        stream = torch.cuda.current_stream(self.device.torch_name)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return prepared[self.outputs[0]]

    def to_torch(self, output: Any) -> torch.Tensor:
        return output.detach().float().cpu()
