"""TensorRT engine build from an ONNX artifact (`tensorrt`, `tensorrt:fp16|bf16|int8|best`).

Written against the TensorRT 10 Python API (named I/O tensors, `build_serialized_network`,
`execute_async_v3`). It needs an NVIDIA GPU and the `tensorrt` wheel; neither is on
this project's development machines nor on the lent GPU machines, so this code has
not been run yet: every TensorRT cell is `skipped` with the reason until it is.

Engines are cached on disk keyed by (model, size, pipeline, batch, TensorRT version,
GPU name), so a re-run loads the engine instead of rebuilding it; the timing cache
is shared across builds so later builds of similar graphs are faster. `build_s`
records what the build (or the cache load) cost.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bench.devices import Device
from bench.text import cache_dir
from optimizers.artifact import Artifact, OnnxArtifact, TensorRTArtifact
from optimizers.registry import Pass, PassContext, PipelineError, register_pass

TRT_MODES = ("fp32", "fp16", "bf16", "int8", "best")
CALIBRATION_BATCHES = 8
WORKSPACE_BYTES = 8 << 30


def engine_dir() -> Path:
    path = cache_dir() / "tensorrt"
    path.mkdir(parents=True, exist_ok=True)
    return path


def engine_key(
    ctx: PassContext, onnx_path: Path, mode: str, trt_version: str, gpu_name: str, batch: int
) -> str:
    """Cache key of an engine; the ONNX file's own bytes are in it, so a changed model never loads a stale engine."""
    digest = hashlib.sha256()
    for text in (ctx.cache_key, mode, str(batch), ",".join(map(str, ctx.batch_sizes)), trt_version, gpu_name):
        digest.update(text.encode() + b"|")
    for path in (onnx_path, onnx_path.with_name(onnx_path.name + ".data")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


@register_pass
class TensorRT(Pass):
    name = "tensorrt"
    consumes = ("onnx",)
    produces = "tensorrt"
    implicit_from = {"torch": "onnx"}
    summary = "build a TensorRT engine from the ONNX model (tensorrt:fp16|bf16|int8|best)"

    def __init__(self, arg: str | None = None) -> None:
        if arg is not None and arg not in TRT_MODES:
            raise PipelineError(f"tensorrt mode {arg!r} unknown; choose from {', '.join(TRT_MODES)}")
        self.arg = arg

    def available(self) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return (
                "TensorRT is not installed (pip install genbench[tensorrt] on a machine with an NVIDIA GPU)"
            )
        return None

    def applies_to(self, device: Device) -> str | None:
        if not device.is_cuda:
            return "TensorRT runs on NVIDIA GPUs only"
        return self.available()

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        import tensorrt as trt

        if not isinstance(artifact, OnnxArtifact):
            raise TypeError(f"tensorrt needs an ONNX artifact, got {artifact.kind}")
        mode = self.arg or "fp32"
        batch = int(ctx.example_inputs[0].shape[0])
        gpu = torch.cuda.get_device_name(ctx.device.torch_name)
        key = engine_key(ctx, artifact.path, mode, trt.__version__, gpu, batch)
        engine_path = engine_dir() / f"{key}.engine"
        precision = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8": "int8", "best": "mixed"}[mode]
        if engine_path.is_file():
            return TensorRTArtifact(
                path=engine_path, precision=precision, notes=(f"tensorrt engine cache hit {key}",)
            )
        serialized = self._build(trt, artifact.path, mode, batch, ctx)
        tmp = engine_path.with_suffix(".tmp")
        tmp.write_bytes(serialized)
        tmp.replace(engine_path)
        return TensorRTArtifact(
            path=engine_path,
            precision=precision,
            notes=(f"tensorrt {trt.__version__} built {mode} engine {key}",),
        )

    def _build(self, trt: Any, onnx_path: Path, mode: str, batch: int, ctx: PassContext) -> bytes:
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if mode == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default; an fp32 row must be fp32
        if mode in ("fp16", "best"):
            config.set_flag(trt.BuilderFlag.FP16)
        if mode in ("bf16", "best"):
            config.set_flag(trt.BuilderFlag.BF16)
        if mode in ("int8", "best"):
            config.set_flag(trt.BuilderFlag.INT8)

        lo, hi = min(ctx.batch_sizes), max(ctx.batch_sizes)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            rest = tuple(tensor.shape)[1:]
            profile.set_shape(tensor.name, (lo, *rest), (batch, *rest), (hi, *rest))
        config.add_optimization_profile(profile)
        if mode in ("int8", "best"):
            config.set_calibration_profile(profile)
            config.int8_calibrator = _entropy_calibrator(
                trt, ctx.calibration(CALIBRATION_BATCHES), ctx.device
            )

        timing_path = engine_dir() / "timing.cache"
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=True)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
        timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        return bytes(serialized)


def _entropy_calibrator(trt: Any, batches: Iterator[tuple[torch.Tensor, ...]], device: Device) -> Any:
    """An IInt8EntropyCalibrator2 fed from the model's own input generator, on the GPU."""

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self._batches = batches
            self._held: list[torch.Tensor] = []
            self._size = 1

        def get_batch_size(self) -> int:
            return self._size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                inputs = next(self._batches)
            except StopIteration:
                return None
            self._held = [t.to(device.torch_name).contiguous() for t in inputs]
            self._size = int(self._held[0].shape[0])
            return [t.data_ptr() for t in self._held[: len(names)]]

        def read_calibration_cache(self) -> bytes | None:
            return None

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return Calibrator()
