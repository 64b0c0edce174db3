"""TensorRT engine build from an ONNX artifact (`tensorrt`, `tensorrt:fp16|bf16|int8|best`).

Written against the TensorRT 10 Python API (named I/O tensors, `build_serialized_network`,
`execute_async_v3`). It needs an NVIDIA GPU and the `tensorrt` wheel; neither is on
this project's development machines nor on the lent GPU machines, so this code has
not been run yet: every TensorRT cell is `skipped` with the reason until it is.

One engine serves every batch size of a run: it holds one optimization profile per
benchmarked batch size (min = opt = max), so each batch runs kernels tuned for
exactly its shape, and the runtime picks the profile that matches its inputs.
Engines are cached on disk keyed by (model, size, pipeline, the run's batch sizes,
TensorRT version, GPU name, this module's build recipe, the ONNX bytes), so the
first cell of a run builds and the others, and re-runs, load it; `build_s` records
what the build (or the cache load) cost. The timing cache is kept per TensorRT
version and GPU, so later builds of similar graphs are faster and one GPU's
timings are never applied to another.

The precision flags (`BuilderFlag.FP16/BF16/INT8`) and the int8 calibrator are
TensorRT's "weak typing" API, deprecated in 10.12 and removed in 11; with
TensorRT 11 only `tensorrt` (fp32, or whatever precision the ONNX model carries,
e.g. `fp16+tensorrt`) applies, and the other modes are skipped with that reason.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from bench.core.artifact import Artifact, OnnxArtifact, TensorRTArtifact
from bench.core.device import Device
from bench.core.optional import missing
from bench.core.paths import cache_dir
from bench.core.text import slug
from bench.runtimes.tensorrt import torch_dtype, trt_logger
from optimizers.base import Pass, PassContext, check_choice, register_pass
from optimizers.state import ArtifactState

TrtMode = Literal["fp32", "fp16", "bf16", "int8", "best"]
TRT_MODES: tuple[str, ...] = get_args(TrtMode)
#: modes that set precision flags, TensorRT's weak-typing API (removed in TensorRT 11)
WEAK_TYPED_MODES = ("fp16", "bf16", "int8", "best")
#: bump when the build recipe below changes, so engines built by an older recipe are not reused
BUILD_RECIPE = 2
CALIBRATION_BATCHES = 8
WORKSPACE_BYTES = 8 << 30
_PRECISION = {"fp16": "fp16", "bf16": "bf16", "int8": "int8", "best": "mixed"}


def engine_dir() -> Path:
    path = cache_dir() / "tensorrt"
    path.mkdir(parents=True, exist_ok=True)
    return path


def engine_key(ctx: PassContext, onnx_path: Path, mode: str, trt_version: str, gpu_name: str) -> str:
    """Cache key of an engine; the ONNX file's own bytes are in it, so a changed model never loads a stale engine."""
    digest = hashlib.sha256()
    parts = (ctx.cache_key, mode, ",".join(map(str, profile_batches(ctx))), trt_version, gpu_name)
    for text in (*parts, str(BUILD_RECIPE)):
        digest.update(text.encode() + b"|")
    for path in OnnxArtifact(path=onnx_path).files():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def profile_batches(ctx: PassContext) -> tuple[int, ...]:
    """The batch sizes the engine gets a profile for: the run's, and this cell's in any case."""
    return tuple(sorted({*ctx.batch_sizes, int(ctx.example_inputs[0].shape[0])}))


def timing_cache_path(trt_version: str, gpu_name: str) -> Path:
    return engine_dir() / f"timing-{slug(trt_version)}-{slug(gpu_name)}.cache"


def major_version(version: str) -> int:
    return int(version.split(".")[0])


@register_pass
class TensorRT(Pass):
    name = "tensorrt"
    consumes = ("onnx",)
    produces = "tensorrt"
    implicit_from = {"torch": "onnx"}
    summary = "build a TensorRT engine from the ONNX model (tensorrt:fp16|bf16|int8|best)"
    argument = "mode"

    def __init__(self, *, mode: TrtMode | None = None) -> None:
        self.mode: str = "fp32" if mode is None else check_choice(self.name, "mode", mode, TRT_MODES)
        self.arg = mode

    def after(self, state: ArtifactState) -> ArtifactState:
        # fp32 mode builds the network in the precision the ONNX model carries (fp16+tensorrt is fp16).
        return ArtifactState(kind="tensorrt", precision=_PRECISION.get(self.mode, state.precision))

    def available(self) -> str | None:
        return missing("tensorrt")

    def applies_to(self, device: Device) -> str | None:
        if not device.is_cuda:
            return "TensorRT runs on NVIDIA GPUs only"
        missing = self.available()
        if missing is not None or self.mode not in WEAK_TYPED_MODES:
            return missing
        import tensorrt as trt

        if major_version(trt.__version__) >= 11:
            return (
                f"tensorrt:{self.mode} sets precision flags, which TensorRT {trt.__version__} no longer has "
                "(networks are strongly typed since TensorRT 11); build from a reduced-precision ONNX "
                "model instead, e.g. fp16+tensorrt"
            )
        return None

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        artifact = self.require(artifact, OnnxArtifact)
        import tensorrt as trt

        gpu = torch.cuda.get_device_name(ctx.device.torch_name)
        key = engine_key(ctx, artifact.path, self.mode, trt.__version__, gpu)
        engine_path = engine_dir() / f"{key}.engine"
        precision = self.after(ArtifactState.of(artifact)).precision
        if engine_path.is_file():
            note = f"tensorrt engine cache hit {key}"
        else:
            serialized = self._build(trt, artifact.path, ctx, gpu)
            tmp = engine_path.with_suffix(f".tmp{id(serialized)}")
            tmp.write_bytes(serialized)
            tmp.replace(engine_path)
            batches = ",".join(map(str, profile_batches(ctx)))
            note = f"tensorrt {trt.__version__} built {self.mode} engine {key} (profiles for batch {batches})"
        return TensorRTArtifact(path=engine_path, precision=precision, notes=(*artifact.notes, note))

    def _build(self, trt: Any, onnx_path: Path, ctx: PassContext, gpu: str) -> bytes:
        builder = trt.Builder(trt_logger())
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, trt_logger())
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        for batch in profile_batches(ctx):
            config.add_optimization_profile(_fixed_batch_profile(builder, inputs, batch))
        with warnings.catch_warnings():
            # TensorRT >= 10.12 warns that the weak-typing API below is deprecated; it is what
            # tensorrt:fp16|bf16|int8|best mean on TensorRT 10, and applies_to keeps it off TensorRT 11.
            warnings.simplefilter("ignore", DeprecationWarning)
            mode = self.mode
            if mode == "fp32":
                config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default; an fp32 row must be fp32
            if mode in ("fp16", "best"):
                config.set_flag(trt.BuilderFlag.FP16)
            if mode in ("bf16", "best"):
                config.set_flag(trt.BuilderFlag.BF16)
            if mode in ("int8", "best"):
                config.set_flag(trt.BuilderFlag.INT8)
                # Calibration runs at one shape, the smallest profiled batch, whichever cell builds the
                # engine (its key does not say which); min = opt = max so the build profiles stay as they are.
                calibration_batch = profile_batches(ctx)[0]
                config.set_calibration_profile(_fixed_batch_profile(builder, inputs, calibration_batch))
                config.int8_calibrator = _entropy_calibrator(
                    trt, ctx.calibration(CALIBRATION_BATCHES), inputs, ctx.device, calibration_batch
                )

        timing_path = timing_cache_path(trt.__version__, gpu)
        _use_timing_cache(config, timing_path)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
        _save_timing_cache(config, timing_path)
        return bytes(serialized)


def _fixed_batch_profile(builder: Any, inputs: list[Any], batch: int) -> Any:
    """An optimization profile with every input at `batch` (min = opt = max)."""
    profile = builder.create_optimization_profile()
    for tensor in inputs:
        shape = tuple(tensor.shape)
        if any(dim < 0 for dim in shape[1:]):
            raise RuntimeError(
                f"ONNX input {tensor.name} has dynamic dimensions besides the batch: {shape}; "
                "genbench builds TensorRT profiles over the batch size only"
            )
        if shape[0] >= 0 and shape[0] != batch:
            raise RuntimeError(
                f"ONNX input {tensor.name} has a fixed batch of {shape[0]}, cannot build a profile for batch "
                f"{batch}; export the model with a dynamic batch axis or run only --batch-sizes {shape[0]}"
            )
        fixed = (batch, *shape[1:])
        profile.set_shape(tensor.name, fixed, fixed, fixed)
    return profile


def _use_timing_cache(config: Any, path: Path) -> None:
    """Build with this TensorRT version's and GPU's timing cache, or a fresh one.

    `create_timing_cache` returns None (it does not raise) on bytes it cannot read, and
    `set_timing_cache` returns False on a cache from another device or version: either
    costs a slower build, never a failed cell.
    """
    cache = config.create_timing_cache(path.read_bytes()) if path.is_file() else None
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _save_timing_cache(config: Any, path: Path) -> None:
    """Write the timing cache back (atomically); a build never fails for want of it."""
    cache = config.get_timing_cache()
    if cache is None:
        return
    tmp = path.with_suffix(f".tmp{id(config)}")
    tmp.write_bytes(bytes(cache.serialize()))
    tmp.replace(path)


def _entropy_calibrator(
    trt: Any, batches: Iterator[tuple[torch.Tensor, ...]], inputs: list[Any], device: Device, batch: int
) -> Any:
    """An IInt8EntropyCalibrator2 fed from the model's own input generator, on the GPU.

    Inputs are matched to the network's by position (the generator yields them in the
    model's argument order, which is the ONNX input order), cut to the calibration
    profile's batch and given the network's dtype; the copies are finished before
    TensorRT, on its own stream, reads them.
    """
    names = [tensor.name for tensor in inputs]
    dtypes = [torch_dtype(tensor.dtype) for tensor in inputs]

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self._held: dict[str, torch.Tensor] = {}

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the batch is part of each tensor's shape

        def get_batch(self, wanted: list[str]) -> list[int] | None:
            try:
                tensors = next(batches)
            except StopIteration:
                return None
            self._held = {
                name: t[:batch].to(device.torch_name, dtype).contiguous()
                for name, dtype, t in zip(names, dtypes, tensors, strict=True)
            }
            torch.cuda.current_stream(device.torch_name).synchronize()
            return [self._held[name].data_ptr() for name in wanted]

        def read_calibration_cache(self) -> bytes | None:
            return None

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return Calibrator()
