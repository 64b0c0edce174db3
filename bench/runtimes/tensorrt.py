"""Run a TensorRT engine on torch CUDA tensors with `execute_async_v3` (TensorRT 10 API).

Inputs and outputs live in torch-allocated device memory. The context's shapes and
tensor addresses are bound to one prepared set of tensors at a time, in `run`, so a
`prepare` made for some other purpose (the runner times H2D copies with it) never
leaves the context pointing at freed memory. The engine is enqueued on a stream of
its own, ordered after and before torch's current stream, where the CUDA-event timer
records: TensorRT on the legacy default stream adds host synchronizations of its own.

The engine has one optimization profile per batch size (see optimizers/tensorrt_pass);
the runtime picks the one whose shapes match the inputs. TensorRT allocates its
weights and activations itself, so its memory is `nvml_process_mem_mb`'s, not
torch's. Not run on real hardware yet: TensorRT is not installed on the machines
this project has had.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from bench.core.artifact import TensorRTArtifact
from bench.core.device import Device
from bench.core.onnx_names import input_positions
from bench.core.optional import missing
from bench.runtimes.base import register_runtime

_TRT_TO_TORCH = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
    "FP8": torch.float8_e4m3fn,
}


def torch_dtype(trt_dtype: Any) -> torch.dtype:
    """The torch dtype of a TensorRT DataType (matched by enum name, which is stable across versions)."""
    name = trt_dtype.name
    if name not in _TRT_TO_TORCH:
        raise TypeError(f"TensorRT tensor type {name} has no torch equivalent here")
    return _TRT_TO_TORCH[name]


@functools.cache
def trt_logger() -> Any:
    """One logger per process: TensorRT keeps the first one it is given."""
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def input_order(engine_inputs: list[str]) -> list[str]:
    """Engine inputs in the model's argument order (genbench's ``input_N`` names, else the engine's order)."""
    positions = input_positions(engine_inputs)
    return [name for _, name in sorted(zip(positions, engine_inputs, strict=True))]


@register_runtime("tensorrt")
class TensorRTRuntime:
    runtime_name = "tensorrt"
    allocates_through_torch = False

    @staticmethod
    def unavailable(device: Device) -> str | None:
        return "TensorRT engines run on CUDA devices only" if not device.is_cuda else missing("tensorrt")

    def __init__(self, artifact: TensorRTArtifact, device: Device) -> None:
        import tensorrt as trt

        if not device.is_cuda:
            raise ValueError("TensorRT engines run on CUDA devices only")
        self.device = device
        self.trt = trt
        self.engine = trt.Runtime(trt_logger()).deserialize_cuda_engine(artifact.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"could not deserialize TensorRT engine {artifact.path}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device.torch_name)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = input_order([n for n in names if is_input[n]])
        self.positions = input_positions(self.inputs)
        self.outputs = [n for n in names if not is_input[n]]
        self._bound: dict[str, torch.Tensor] | None = None

    def _dtype(self, name: str) -> torch.dtype:
        return torch_dtype(self.engine.get_tensor_dtype(name))

    def _profile_for(self, batch: int) -> int:
        """The optimization profile built for this batch size (the engine has one per benchmarked batch)."""
        first = self.inputs[0]
        for index in range(self.engine.num_optimization_profiles):
            low, _, high = self.engine.get_tensor_profile_shape(first, index)
            if low[0] <= batch <= high[0]:
                return index
        raise RuntimeError(f"the TensorRT engine has no optimization profile for batch {batch}")

    def _bind_shapes(self, inputs: dict[str, torch.Tensor]) -> None:
        batch = int(inputs[self.inputs[0]].shape[0])
        profile = self._profile_for(batch)
        if self.context.active_optimization_profile != profile:
            self.context.set_optimization_profile_async(profile, self.stream.cuda_stream)
        for name in self.inputs:
            shape = tuple(inputs[name].shape)
            if not self.context.set_input_shape(name, shape):
                raise RuntimeError(
                    f"TensorRT refused input {name} of shape {shape} (outside the engine's profile)"
                )

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        self._bound = None  # the context's shapes change below; addresses are bound again on the next run
        prepared: dict[str, torch.Tensor] = {}
        if len(inputs) < max(self.positions, default=-1) + 1:
            raise ValueError(f"the TensorRT engine wants {len(self.inputs)} inputs, got {len(inputs)}")
        for name, position in zip(self.inputs, self.positions, strict=True):
            tensor = inputs[
                position
            ]  # by genbench's input_N numbering: an input the exporter dropped is skipped
            prepared[name] = tensor.to(self.device.torch_name, self._dtype(name)).contiguous()
        self._bind_shapes(prepared)  # the output shapes follow from the input shapes
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            prepared[name] = torch.empty(shape, dtype=self._dtype(name), device=self.device.torch_name)
        return prepared

    def run(self, prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        if self._bound is not prepared:
            self._bind_shapes(prepared)
            for name, tensor in prepared.items():
                self.context.set_tensor_address(name, tensor.data_ptr())
            self._bound = prepared  # also keeps the bound buffers alive
        current = torch.cuda.current_stream(self.device.torch_name)
        self.stream.wait_stream(current)  # inputs written on torch's stream are ready
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        current.wait_stream(self.stream)  # the timer's end event and later reads come after the engine
        return prepared[self.outputs[0]]

    def to_torch(self, output: Any) -> torch.Tensor:
        return output.detach().float().cpu()
