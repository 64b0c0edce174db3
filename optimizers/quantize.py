"""int8 passes: ONNX Runtime static (QDQ) and dynamic quantization, and PT2E on torch artifacts.

``int8[:minmax|entropy|percentile[:N]]`` is static post-training quantization
with ``onnxruntime.quantization``, calibrated on N batches (default 8) from
``ctx.calibration``; ``int8-dynamic`` quantizes weights ahead of time and
activations at run time; both export first when they meet a torch artifact
(``int8`` alone is ``onnx+int8``), and both quantize an fp32 model only (so
``fp16+int8`` is refused when the pipeline is parsed). ``pt2e-int8`` is the
torch-side route (torch.export + torchao's X86InductorQuantizer + torch.compile).
Why the static recipe is what it is, measured: see ``optimizers.ort_quant``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import ClassVar, Literal, Self

import torch

from bench.core.artifact import Artifact, OnnxArtifact, TorchArtifact, present_inputs
from bench.core.device import Device
from bench.core.errors import NotApplicable, PipelineError
from bench.core.optional import missing
from bench.core.text import did_you_mean, one_line
from optimizers.base import Pass, PassContext, check_choice, register_pass
from optimizers.onnx_passes import quiet
from optimizers.ort_quant import (
    CALIBRATION_METHODS,
    CONV_TRANSPOSE_OPS,
    DEFAULT_CALIBRATION_BATCHES,
    QUANTIZED_OPS,
    calibrate,
    calibration_batches,
    calibration_feeds,
    cpu_has_vnni,
    describe,
    int8_node_count,
    op_types_in,
    preprocess,
    quantized_ops,
    reader,
    static_recipes,
)
from optimizers.state import ArtifactState

CalibrationMethod = Literal["minmax", "entropy", "percentile"]
_STATIC_FORMS = f"use int8, int8:METHOD or int8:METHOD:N with METHOD in {', '.join(CALIBRATION_METHODS)}"


class _OrtQuantPass(Pass):
    """Shared by the onnxruntime quantizers: fp32 ONNX in, int8 ONNX out; exports first on torch."""

    consumes = ("onnx",)
    produces = "onnx"
    implicit_from: ClassVar[dict[str, str]] = {"torch": "onnx"}

    def available(self) -> str | None:
        return missing("onnx", "onnxruntime")

    def refuses(self, state: ArtifactState) -> str | None:
        if state.precision != "fp32":
            return (
                f"{self.name} quantizes an fp32 model; this one is {state.precision}: "
                f"drop {state.precision} from the pipeline ({self.name} sets the precision)"
            )
        return super().refuses(state)

    def after(self, state: ArtifactState) -> ArtifactState:
        return state.evolve(precision="int8")

    def _preprocessed(self, artifact: Artifact, ctx: PassContext) -> tuple[OnnxArtifact, Path, Path, str]:
        """The source artifact, its preprocessed copy, where the quantized model goes, and the preprocess note."""
        art = self.require(artifact, OnnxArtifact)
        pre = Path(ctx.workdir) / "model.pre.onnx"
        return art, pre, Path(ctx.workdir) / f"model.{self.name}.onnx", preprocess(art.path, pre)


@register_pass
class Int8(_OrtQuantPass):
    """Static post-training int8 (QDQ) with onnxruntime; see the module docstring for the recipe."""

    name = "int8"
    summary = "static int8 (QDQ) with onnxruntime; int8:minmax|entropy|percentile[:N] calibrates on N batches"

    def __init__(self, *, method: CalibrationMethod | None = None, batches: int | None = None) -> None:
        if method is not None:
            check_choice(self.name, "calibration method", method, tuple(CALIBRATION_METHODS))
        self.method: str = method or "minmax"
        self.batches: int = calibration_batches(self.name, batches)
        given = method is not None or batches is not None
        self.arg = (self.method + ("" if batches is None else f":{batches}")) if given else None

    @classmethod
    def from_arg(cls, arg: str | None) -> Self:
        """``None | METHOD | METHOD:N``."""
        if arg is None:
            return cls()
        method, colon, count = arg.partition(":")
        if not colon:
            return cls(method=method)  # type: ignore[arg-type]  # any text: __init__ checks it
        if ":" in count:
            raise PipelineError(f"int8 argument {arg!r} not understood; {_STATIC_FORMS}")
        try:
            batches = int(count)
        except ValueError:
            raise PipelineError(
                f"int8 calibration batch count {count!r} is not an integer; {_STATIC_FORMS}"
            ) from None
        return cls(method=method, batches=batches)  # type: ignore[arg-type]

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        t0 = time.perf_counter()
        art, pre, out, pre_note = self._preprocessed(artifact, ctx)
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        feeds = calibration_feeds(pre, ctx, self.batches)
        recipes = static_recipes(ctx.device)
        all_ops = tuple(sorted({op for r in recipes for op in r.op_types}))
        cache = calibrate(pre, feeds, self.method, all_ops, Path(ctx.workdir))
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
                        reader(feeds),
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
                    raise RuntimeError(f"nothing quantized ({describe(counts)})")
            except Exception as exc:
                failures.append(f"{recipe.label}: {one_line(exc, 120)}")
                continue
            notes = [
                pre_note,
                f"int8 recipe={recipe.label}" + (f" (after {'; '.join(failures)})" if failures else ""),
                f"calibration={self.method}x{self.batches}" + ("" if cache else " (by quantize_static)"),
                f"activations={'u8' if activation == QuantType.QUInt8 else 's8'} weights=s8"
                + (" reduce_range" if reduce_range else ""),
                f"quantized {describe(counts)}",
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

    def __init__(self, *, conv: bool = False) -> None:
        self.conv = conv
        self.op_types: tuple[str, ...] = QUANTIZED_OPS if conv else ("MatMul", "Gemm")
        self.arg = "conv" if conv else None

    @classmethod
    def from_arg(cls, arg: str | None) -> Self:
        if arg not in (None, "conv"):
            raise PipelineError(
                f"int8-dynamic argument {arg!r} not understood; use int8-dynamic or int8-dynamic:conv"
                + did_you_mean(arg, ("conv",))
            )
        return cls(conv=arg == "conv")

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        t0 = time.perf_counter()
        art, pre, out, pre_note = self._preprocessed(artifact, ctx)
        from onnxruntime.quantization import QuantType, quantize_dynamic

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
            f"quantized {describe(counts)}",
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

    def refuses(self, state: ArtifactState) -> str | None:
        if state.compiled:
            return (
                "pt2e-int8 exports and compiles the eager model itself: drop compile and cudagraph before it"
            )
        if state.precision != "fp32":
            return f"pt2e-int8 quantizes an fp32 model; this one is {state.precision}: drop {state.precision}"
        return super().refuses(state)

    def after(self, state: ArtifactState) -> ArtifactState:
        return state.evolve(precision="int8", compiled=True)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

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
