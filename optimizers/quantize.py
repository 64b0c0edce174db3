"""int8 passes: ONNX Runtime static (QDQ) and dynamic quantization, and PT2E on torch artifacts.

``int8[:minmax|entropy|percentile[:N]]`` is static post-training quantization
with ``onnxruntime.quantization``, calibrated on N batches (default 8) from
``ctx.calibration``; ``int8-dynamic`` quantizes weights ahead of time and
activations at run time; both export first when they meet a torch artifact
(``int8`` alone is ``onnx+int8``). ``pt2e-int8`` is the torch-side route
(torch.export + torchao's X86InductorQuantizer + torch.compile).

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
import copy
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bench.core.artifact import Artifact, OnnxArtifact, TorchArtifact, present_inputs
from bench.core.device import Device
from bench.core.errors import NotApplicable, PipelineError
from bench.core.onnx_names import input_positions
from bench.core.optional import missing
from bench.core.text import one_line
from optimizers.onnx_passes import onnx_artifact, quiet
from optimizers.registry import Pass, PassContext, register_pass

CALIBRATION_METHODS: dict[str, str] = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
DEFAULT_CALIBRATION_BATCHES = 8
#: histogram bins of the entropy calibrator (onnxruntime default 128 = min-max; 2048 took 85 s on the tiny VAE)
ENTROPY_BINS = 512
MAX_CALIBRATION_BATCHES = 1024
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


def _parse_static_arg(arg: str | None) -> tuple[str, int]:
    """``None | METHOD | METHOD:N`` -> (method, batches); PipelineError with the accepted forms otherwise."""
    if arg is None:
        return "minmax", DEFAULT_CALIBRATION_BATCHES
    forms = f"use int8, int8:METHOD or int8:METHOD:N with METHOD in {', '.join(CALIBRATION_METHODS)}"
    parts = arg.split(":")
    if len(parts) > 2 or parts[0] not in CALIBRATION_METHODS:
        raise PipelineError(f"int8 argument {arg!r} not understood; {forms}")
    if len(parts) == 1:
        return parts[0], DEFAULT_CALIBRATION_BATCHES
    try:
        batches = int(parts[1])
    except ValueError:
        raise PipelineError(f"int8 calibration batch count {parts[1]!r} is not an integer; {forms}") from None
    if not 1 <= batches <= MAX_CALIBRATION_BATCHES:
        raise PipelineError(
            f"int8 calibration batch count must be in 1..{MAX_CALIBRATION_BATCHES} (got {batches})"
        )
    return parts[0], batches


# --------------------------------------------------------------------- ONNX helpers
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


def _calibration_feeds(path: Path, ctx: PassContext, batches: int) -> list[dict[str, np.ndarray]]:
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


def _reader(feeds: list[dict[str, np.ndarray]]) -> Any:
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
    import inspect

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
        calibrator.collect_data(_reader(feeds))
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


def _describe(counts: dict[str, tuple[int, int]]) -> str:
    return " ".join(f"{op}={done}/{total}" for op, (done, total) in counts.items()) or "none"


# --------------------------------------------------------------------- passes
class _OrtQuantPass(Pass):
    """Shared by the onnxruntime quantizers: fp32 ONNX in, int8 ONNX out; exports first on torch."""

    consumes = ("onnx",)
    produces = "onnx"
    implicit_from: ClassVar[dict[str, str]] = {"torch": "onnx"}

    def available(self) -> str | None:
        return missing("onnx", "onnxruntime")

    def _source(self, artifact: Artifact) -> OnnxArtifact:
        art = onnx_artifact(artifact, self.name)
        if art.precision != "fp32":
            raise PipelineError(f"{self.name} quantizes an fp32 ONNX model; this one is {art.precision}")
        return art


@register_pass
class Int8(_OrtQuantPass):
    """Static post-training int8 (QDQ) with onnxruntime; see the module docstring for the recipe."""

    name = "int8"
    summary = "static int8 (QDQ) with onnxruntime; int8:minmax|entropy|percentile[:N] calibrates on N batches"

    def __init__(self, arg: str | None = None) -> None:
        self.method, self.batches = _parse_static_arg(arg)
        self.arg = arg

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        art = self._source(artifact)
        workdir = Path(ctx.workdir)
        pre = workdir / "model.pre.onnx"
        out = workdir / "model.int8.onnx"
        t0 = time.perf_counter()
        pre_note = preprocess(art.path, pre)
        feeds = _calibration_feeds(pre, ctx, self.batches)
        recipes = static_recipes(ctx.device)
        all_ops = tuple(sorted({op for r in recipes for op in r.op_types}))
        cache = calibrate(pre, feeds, self.method, all_ops, workdir)
        if ctx.device.is_cuda:  # TensorRT/CUDA want symmetric int8 activations
            activation, reduce_range, extra = QuantType.QInt8, False, {"ActivationSymmetric": True}
        else:
            activation, reduce_range, extra = QuantType.QUInt8, not cpu_has_vnni(), {}
        present = op_types_in(pre)
        failures: list[str] = []
        for recipe in recipes:
            if not present & set(recipe.op_types):
                continue  # nothing of this recipe's kinds in the graph (DCGAN has only ConvTranspose)
            try:
                with quiet():
                    quantize_static(
                        str(pre),
                        str(out),
                        _reader(feeds),
                        quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(recipe.op_types),
                        per_channel=recipe.per_channel,
                        reduce_range=reduce_range,
                        activation_type=activation,
                        weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[self.method]),
                        extra_options=dict(extra),
                        **({"calibration_cache_path": str(cache)} if cache else {}),
                    )
                counts = quantized_ops(out, recipe.op_types)
                if not any(done for done, _ in counts.values()):
                    raise RuntimeError(f"nothing quantized ({_describe(counts)})")
            except Exception as exc:
                failures.append(f"{recipe.label}: {one_line(exc, 120)}")
                continue
            notes = [
                pre_note,
                f"int8 recipe={recipe.label}" + (f" (after {'; '.join(failures)})" if failures else ""),
                f"calibration={self.method}x{self.batches}" + ("" if cache else " (by quantize_static)"),
                f"activations={'u8' if activation == QuantType.QUInt8 else 's8'} weights=s8"
                + (" reduce_range" if reduce_range else ""),
                f"quantized {_describe(counts)}",
                f"quantize_s={time.perf_counter() - t0:.1f}",
            ]
            return art.evolve(path=out, precision="int8", notes=(*art.notes, *notes))
        if not failures:
            raise NotApplicable(f"nothing to quantize: the graph has no {'/'.join(CONV_TRANSPOSE_OPS)} node")
        raise RuntimeError(f"int8 static quantization failed with every recipe: {' | '.join(failures)}")


@register_pass
class Int8Dynamic(_OrtQuantPass):
    """Dynamic int8 with onnxruntime: weights quantized ahead of time, activations per call.

    Meant for MatMul/Gemm-heavy models (transformers), so by default only
    MatMul and Gemm with constant weights are quantized (MatMulInteger).
    ``int8-dynamic:conv`` also turns Conv into ConvInteger, which is there for
    completeness, not speed: on the tiny UNet it ran 36x slower than fp32
    (80 ms vs 2.2 ms), as ConvInteger has no fused, tuned kernel and every call
    measures activation ranges. No calibration data is needed. Weights are s8,
    activations u8 (reduce_range without VNNI, as for ``int8``). A graph with
    nothing to quantize (DCGAN, the VAE decoder: no weight MatMul/Gemm) is an error.
    """

    name = "int8-dynamic"
    summary = "dynamic int8 with onnxruntime (MatMul/Gemm weights int8); int8-dynamic:conv adds Conv"

    def __init__(self, arg: str | None = None) -> None:
        if arg not in (None, "conv"):
            raise PipelineError(
                f"int8-dynamic argument {arg!r} not understood; use int8-dynamic or int8-dynamic:conv"
            )
        self.arg = arg
        self.op_types: tuple[str, ...] = QUANTIZED_OPS if arg == "conv" else ("MatMul", "Gemm")

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        art = self._source(artifact)
        workdir = Path(ctx.workdir)
        pre = workdir / "model.pre.onnx"
        out = workdir / "model.int8-dynamic.onnx"
        t0 = time.perf_counter()
        pre_note = preprocess(art.path, pre)
        reduce_range = not cpu_has_vnni() and not ctx.device.is_cuda
        with quiet():
            quantize_dynamic(
                str(pre),
                str(out),
                op_types_to_quantize=list(self.op_types),
                per_channel=False,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
            )
        if int8_node_count(out) == 0:
            raise NotApplicable(
                f"nothing quantized: no {'/'.join(self.op_types)} node with constant weights in the graph"
            )
        counts = quantized_ops(out, self.op_types)
        notes = [
            pre_note,
            f"int8 dynamic {'/'.join(self.op_types)} weights=s8" + (" reduce_range" if reduce_range else ""),
            f"quantized {_describe(counts)}",
            f"quantize_s={time.perf_counter() - t0:.1f}",
        ]
        return art.evolve(path=out, precision="int8", notes=(*art.notes, *notes))


@register_pass
class Pt2eInt8(Pass):
    """int8 on the torch side: torch.export, PT2E with X86InductorQuantizer, then torch.compile.

    torch 2.13 no longer ships PT2E quantization (``torch.ao.quantization.quantize_pt2e``
    and ``torch.ao.quantization.quantizer`` are gone); it lives in torchao
    (``torchao.quantization.pt2e``). Without torchao the cell is skipped with that reason.
    Static, per-tensor u8 activations / per-channel s8 weights (the quantizer's
    default config), calibrated on ``ctx.calibration(8)``; Inductor then fuses the
    quantized patterns into oneDNN int8 kernels (``freezing`` on, as the
    X86InductorQuantizer docs require). The compile is forced in ``apply``, so its
    cost is in ``build_s``.
    """

    name = "pt2e-int8"
    summary = "int8 via torch.export + PT2E X86InductorQuantizer (torchao) + torch.compile"

    def available(self) -> str | None:
        if missing("torchao") is not None:
            return (
                f"torch {torch.__version__.split('+')[0]} has no PT2E quantization (moved to torchao); "
                "pip install torchao"
            )
        return None

    def applies_to(self, device: Device) -> str | None:
        reason = self.available()
        if reason is None and device.is_cuda:
            return "X86InductorQuantizer targets x86 CPUs; use int8+ort:trt on CUDA"
        return reason

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        if not isinstance(artifact, TorchArtifact):
            raise TypeError(f"pt2e-int8 expects a torch artifact, got {artifact.kind}")
        art = artifact
        if art.compiled:
            raise PipelineError("pt2e-int8 compiles the model itself: drop 'compile' from this pipeline")
        if art.precision != "fp32":
            raise PipelineError(f"pt2e-int8 quantizes an fp32 model; this one is {art.precision}")
        t0 = time.perf_counter()
        module = copy.deepcopy(art.module).eval()
        inputs = present_inputs(ctx.example_inputs, ctx.device.torch_name, art.input_dtype, art.channels_last)
        batch = torch.export.Dim("batch", min=1)
        shapes = tuple({0: batch} if t.dim() > 0 else None for t in inputs)
        with quiet():
            try:
                exported = torch.export.export(module, inputs, dynamic_shapes=shapes).module()
                dynamic = "dynamic batch"
            except Exception:  # e.g. a batch-1 example specializes the batch axis
                exported = torch.export.export(module, inputs).module()
                dynamic = "static shapes"
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(exported, quantizer)
            with torch.no_grad():
                for batch_inputs in ctx.calibration(DEFAULT_CALIBRATION_BATCHES):
                    prepared(
                        *present_inputs(
                            batch_inputs, ctx.device.torch_name, art.input_dtype, art.channels_last
                        )
                    )
            converted = convert_pt2e(prepared)
            import torch._inductor.config as inductor_config

            # the int8 patterns are matched on frozen weights; patched, not set, so later cells keep the default
            with inductor_config.patch(freezing=True), torch.inference_mode():
                compiled = torch.compile(converted)
                compiled(*inputs)
        notes = (
            *art.notes,
            f"pt2e x86-inductor int8 ({dynamic})",
            f"quantize_s={time.perf_counter() - t0:.1f}",
        )
        return art.evolve(module=compiled, precision="int8", compiled=True, notes=notes)
