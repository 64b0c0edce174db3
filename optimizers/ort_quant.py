"""onnxruntime quantization, the parts the int8 passes share: recipes, calibration, graph checks.

The passes themselves (``int8``, ``int8-dynamic``) are in ``optimizers.quantize``;
onnx and onnxruntime are imported inside these functions, never at module import.

The static recipe, measured on this project's models (AMD EPYC, AVX2 without
VNNI, onnxruntime 1.32, batch 8, ``small``; timings on a shared 2-core machine,
so only differences well beyond +-20% were taken as real):

* QDQ format, QInt8 weights, QUInt8 activations, ``reduce_range`` (7-bit
  weights) on CPUs without VNNI. Without VNNI, ORT's u8 x s8 kernels add pairs
  of products in int16 (VPMADDUBSW) and saturate: UNet PSNR 34 dB without
  reduce_range, 44 dB with it, at the same speed. QInt8 activations were as
  accurate (43 dB) and no faster (647 vs 550 ms in one interleaved run). This is
  also onnxruntime's own advice for x86 without VNNI. On a VNNI/AMX CPU
  reduce_range is off; on CUDA, activations are symmetric QInt8 (what TensorRT wants).
* Only ``Conv``, ``MatMul`` and ``Gemm`` are quantized: ORT's CPU EP has int8
  kernels for them (QLinearConv, QLinearMatMul, QGemm); QDQ pairs around ops
  without int8 kernels (GroupNorm, SiLU, Add, Resize) only add work (quantizing
  every op type gave the UNet 33 dB at no gain in speed). This is also what
  avoided "Quantization parameter shared mode is not supported for weight yet"
  with per-channel weights on an older onnxruntime.
* ``ConvTranspose`` is not quantized while anything else is: the CPU EP has no
  int8 ConvTranspose kernel, so QDQ around it runs as dequantize + fp32
  ConvTranspose (DCGAN small: 158 ms quantized vs 98 ms fp32). A graph with
  nothing else (the DCGAN generator) gets the last-resort recipe that does
  quantize it, said so in the notes: int8 weights (a 4x smaller file), fp32 speed
  at best. On CUDA it is quantized from the start (TensorRT has int8 deconvolution).
* Per-channel weights first (no measurable cost here; these random-init weights
  have similar ranges in every channel, trained ones often do not); when a
  recipe fails, a safer one is tried (per-tensor, then Conv only) and the one
  that ran is in the notes. All recipes share one calibration (see ``calibrate``).
* Calibration methods: minmax (default) keeps the full range, which generative
  outputs need; entropy (KL) and percentile clip outliers and were 1-3 dB worse
  on the VAE and UNet.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.device import Device
from bench.core.errors import PipelineError
from bench.core.onnx_names import input_positions
from bench.core.text import one_line
from optimizers.base import PassContext
from optimizers.onnx_passes import quiet

CALIBRATION_METHODS: dict[str, str] = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
DEFAULT_CALIBRATION_BATCHES = 8
#: histogram bins of the entropy calibrator (onnxruntime default 128 = min-max; 2048 took 85 s on the tiny VAE)
ENTROPY_BINS = 512
MAX_CALIBRATION_BATCHES = 1024


def calibration_batches(pass_name: str, batches: int | None) -> int:
    """The calibration batch count a quantizing pass was given (the default when None), checked once for all."""
    if batches is None:
        return DEFAULT_CALIBRATION_BATCHES
    if (
        isinstance(batches, bool)
        or not isinstance(batches, int)
        or not 1 <= batches <= MAX_CALIBRATION_BATCHES
    ):
        raise PipelineError(
            f"{pass_name} calibration batch count must be an integer in 1..{MAX_CALIBRATION_BATCHES} "
            f"(got {batches!r})"
        )
    return batches


#: ops with int8 kernels in onnxruntime's CPU EP that dominate these models' time
QUANTIZED_OPS: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
#: node types that only appear in a graph that really computes in 8 bits
INT8_NODE_TYPES = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
    }
)


@dataclass(frozen=True)
class Recipe:
    """One way to call ``quantize_static``; tried in order until one works."""

    label: str
    op_types: tuple[str, ...]
    per_channel: bool


CONV_TRANSPOSE_OPS: tuple[str, ...] = (*QUANTIZED_OPS, "ConvTranspose")

STATIC_RECIPES: tuple[Recipe, ...] = (
    Recipe("conv/matmul/gemm per-channel", QUANTIZED_OPS, per_channel=True),
    Recipe("conv/matmul/gemm per-tensor", QUANTIZED_OPS, per_channel=False),
    Recipe("conv per-tensor", ("Conv",), per_channel=False),
    # Last resort, for graphs with nothing else (DCGAN): int8 weights and QDQ around ConvTranspose,
    # which the CPU EP runs dequantized in fp32 (smaller file, no faster).
    Recipe(
        "with ConvTranspose (no int8 kernel on CPU: runs dequantized)", CONV_TRANSPOSE_OPS, per_channel=True
    ),
)
#: on CUDA (TensorRT has int8 deconvolution) ConvTranspose is quantized from the start
CUDA_RECIPES: tuple[Recipe, ...] = (
    Recipe("conv/convtranspose/matmul/gemm per-channel", CONV_TRANSPOSE_OPS, per_channel=True),
    Recipe("conv/convtranspose/matmul/gemm per-tensor", CONV_TRANSPOSE_OPS, per_channel=False),
    Recipe("conv per-tensor", ("Conv",), per_channel=False),
)


def static_recipes(device: Device) -> tuple[Recipe, ...]:
    return CUDA_RECIPES if device.is_cuda else STATIC_RECIPES


def cpu_has_vnni() -> bool:
    """True when the CPU has an int8 dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    check = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(check()) if check is not None else False


def _graph_inputs(path: Path) -> list[tuple[str, Any]]:
    """(name, numpy dtype) of each graph input, read without loading the weights."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return [
        (i.name, tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        for i in model.graph.input
        if i.name not in initializers
    ]


def calibration_feeds(path: Path, ctx: PassContext, batches: int) -> list[dict[str, np.ndarray]]:
    """``batches`` input dicts for the ONNX model at ``path``, drawn from ``ctx.calibration``."""
    inputs = _graph_inputs(path)
    positions = input_positions([name for name, _ in inputs])
    feeds = []
    for batch in ctx.calibration(batches):
        feeds.append(
            {
                name: np.ascontiguousarray(batch[pos].detach().cpu().numpy().astype(dtype, copy=False))
                for (name, dtype), pos in zip(inputs, positions, strict=True)
            }
        )
    return feeds


def reader(feeds: list[dict[str, np.ndarray]]) -> Any:
    """A fresh CalibrationDataReader over ``feeds`` (one per quantize call: readers are consumed)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds)

    return _Feeds()


def calibrate(
    model: Path, feeds: list[dict[str, np.ndarray]], method: str, op_types: tuple[str, ...], workdir: Path
) -> Path | None:
    """Compute activation ranges once, into a calibration cache every recipe reuses.

    Why not let ``quantize_static`` calibrate: it cannot pass ``num_bins`` to the
    entropy calibrator, whose defaults (128 bins, 128 quantized bins) leave a
    single candidate threshold, the full range, so "entropy" silently equals
    min-max (identical scales, checked on onnxruntime 1.32). Here entropy uses
    2048 bins (TensorRT's KL-divergence setup). Calibrating once for the union
    of the recipes' op types also makes a fallback recipe cost no new
    calibration. Returns None on an onnxruntime without calibration caches
    (then ``quantize_static`` calibrates by itself).
    """
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization import calibrate as cal

    if (
        not hasattr(cal, "save_tensors_data")
        or "calibration_cache_path" not in inspect.signature(quantize_static).parameters
    ):
        return None
    options = {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128} if method == "entropy" else {}
    with quiet():
        calibrator = cal.create_calibrator(
            model,
            list(op_types),
            augmented_model_path=str(workdir / "model.augmented.onnx"),
            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[method]),
            extra_options=options,
        )
        calibrator.collect_data(reader(feeds))
        ranges = calibrator.compute_data()
    cache = workdir / "calibration.json"
    cal.save_tensors_data(ranges, cache)
    return cache


def preprocess(src: Path, dst: Path) -> str:
    """``quant_pre_process``: ORT's basic graph optimizations (BN folding...) plus shape inference.

    Symbolic shape inference cannot finish on some graphs (the UNet's, without
    ``auto_merge``); then ONNX's own shape inference alone is used. Returns a note.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = src.resolve(), dst.resolve()
    # symbolic shape inference drops "sym_shape_infer_temp.onnx" in the working directory when it fails
    with contextlib.chdir(dst.parent):
        try:
            with quiet():
                quant_pre_process(str(src), str(dst), auto_merge=True)
            return "preprocess=symbolic"
        except Exception as exc:
            first = one_line(exc, 80)
        with quiet():
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return f"preprocess=onnx-shapes (symbolic failed: {first})"


def quantized_ops(path: Path, op_types: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """For each op type: (nodes fed by a DequantizeLinear or already integer, nodes in the graph)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    total: Counter[str] = Counter()
    done: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type in INT8_NODE_TYPES - {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}:
            done[node.op_type] += 1
            total[node.op_type] += 1
        elif node.op_type in op_types:
            total[node.op_type] += 1
            if node.input and producer.get(node.input[0]) == "DequantizeLinear":
                done[node.op_type] += 1
    return {op: (done[op], total[op]) for op in sorted(total)}


def op_types_in(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


def int8_node_count(path: Path) -> int:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(node.op_type in INT8_NODE_TYPES for node in graph.node)


def describe(counts: dict[str, tuple[int, int]]) -> str:
    return " ".join(f"{op}={done}/{total}" for op, (done, total) in counts.items()) or "none"
