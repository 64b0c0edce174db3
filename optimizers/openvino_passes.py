"""OpenVINO passes: convert to an OpenVINO IR (fp32 or bf16 inference) and NNCF post-training int8.

``openvino`` converts the eager fp32 torch model with ``openvino.convert_model``
(its PyTorch frontend traces the module itself), or, after ``onnx`` or ``int8``,
the ONNX file. From torch is the default route: it needs no ONNX export (nor the
``onnx`` extra), and a hop less is a converter less to go wrong; from ONNX is there
for a model that is already ONNX, or to run onnxruntime's QDQ int8 on OpenVINO.
``openvino:bf16`` asks the CPU plugin to compute in bf16 (its inference precision
hint); on a CPU without AVX512-BF16 or AMX it is left out of the default matrix, as
torch's ``bf16`` is. After ``ov-int8``, ``openvino:bf16`` computes the ops NNCF left
unquantized in bf16.

``ov-int8[:N][:bias=fast|full][:preset=performance|mixed][:ignore=ends|OPTYPE]`` is
NNCF's post-training quantization, calibrated on N batches (default 8) from the
model's own input generator: ``ctx.calibration``, the batches onnxruntime's
``int8`` calibrates on. ``bias=full`` replaces NNCF's fast bias correction by the
full one (slower to build, sometimes more accurate); ``preset=mixed`` makes
activations asymmetric (NNCF's choice for activations that are not centred on
zero); ``ignore=ends`` leaves the first and the last weighted op in floating point
(the layers generative models are most sensitive to), ``ignore=MatMul`` (or another
OpenVINO op type) every op of that type. openvino and nncf are imported inside the
passes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Self

from bench.core.artifact import Artifact, OnnxArtifact, OpenVinoArtifact, TorchArtifact
from bench.core.device import Device, emulated_dtype
from bench.core.errors import PipelineError
from bench.core.optional import missing
from bench.runtimes.openvino import numpy_inputs, openvino_unavailable
from optimizers.base import Pass, PassContext, check_choice, register_pass
from optimizers.onnx_passes import export_inputs, quiet
from optimizers.ort_quant import calibration_batches
from optimizers.state import ArtifactState

#: genbench's precision names -> the CPU plugin's INFERENCE_PRECISION_HINT
INFERENCE_PRECISIONS: dict[str, str] = {"fp32": "f32", "bf16": "bf16"}
#: OpenVINO op types with weights NNCF quantizes, which ``ignore=`` may name
WEIGHTED_OP_TYPES: tuple[str, ...] = (
    "Convolution",
    "GroupConvolution",
    "ConvolutionBackpropData",
    "MatMul",
)
BIAS_CORRECTIONS: tuple[str, ...] = ("fast", "full")
PRESETS: tuple[str, ...] = ("performance", "mixed")
_OV_INT8_FORMS = "ov-int8[:N][:bias=fast|full][:preset=performance|mixed][:ignore=ends|OPTYPE]"


def performance_hint(scenario: str) -> str:
    """OpenVINO's hint for a scenario: throughput (several streams) offline, latency otherwise."""
    return "THROUGHPUT" if scenario == "offline" else "LATENCY"


def save_ir(model: Any, path: Path) -> Path:
    """Write an IR as it was made: ``save_model`` would otherwise compress fp32 weights to fp16."""
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


@register_pass
class OpenVino(Pass):
    """Convert to OpenVINO (from the torch model or an ONNX file); ``openvino:bf16`` computes in bf16."""

    name = "openvino"
    consumes = ("torch", "onnx", "openvino")
    produces = "openvino"
    summary = "run on OpenVINO's CPU plugin (converted from the torch model, or an ONNX one); openvino:bf16"
    argument = "precision"

    def __init__(self, *, precision: str | None = None) -> None:
        self.precision: str = (
            "fp32"
            if precision is None
            else check_choice(self.name, "precision", precision, tuple(INFERENCE_PRECISIONS))
        )
        self.arg = precision

    def available(self) -> str | None:
        return missing("openvino")

    def applies_to(self, device: Device) -> str | None:
        return openvino_unavailable(device)

    def default_exclusion(self, device: Device) -> str | None:
        return emulated_dtype(device, "bf16") if self.precision == "bf16" else None

    def refuses(self, state: ArtifactState) -> str | None:
        if state.kind == "openvino":
            if self.precision == "fp32" or state.precision != "int8":
                return (
                    "the model is already an OpenVINO one: keep one openvino step "
                    "(a second one is only openvino:bf16 after ov-int8)"
                )
            return None  # openvino:bf16 after ov-int8: the ops left unquantized compute in bf16
        if state.kind == "torch":
            if state.compiled:
                return (
                    "openvino converts the eager torch model, not one compile, cudagraph or pt2e-int8 "
                    "wrapped: drop them (OpenVINO compiles the model itself)"
                )
            if state.sparse24:
                return "openvino cannot convert 2:4 semi-structured weights: drop sparse24"
        if state.precision not in ("fp32", "int8"):
            return (
                f"openvino converts an fp32 (or int8 ONNX) model, and this one is {state.precision}: "
                "drop the cast and ask for openvino:bf16"
            )
        return super().refuses(state)

    def after(self, state: ArtifactState) -> ArtifactState:
        precision = (
            state.precision if state.precision == "int8" or self.precision == "fp32" else self.precision
        )
        return ArtifactState(kind="openvino", precision=precision)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        precision = INFERENCE_PRECISIONS[self.precision]
        if isinstance(artifact, OpenVinoArtifact):
            art = self.require(artifact, OpenVinoArtifact)
            return art.evolve(inference_precision=precision)
        import openvino as ov

        t0 = time.perf_counter()
        path = Path(ctx.workdir) / "model.openvino.xml"
        if isinstance(artifact, OnnxArtifact):
            onnx = self.require(artifact, OnnxArtifact)
            with quiet():
                model = ov.convert_model(str(onnx.path))
            source, weights, notes = "onnx", onnx.precision, onnx.notes
        else:
            art = self.require(artifact, TorchArtifact)
            import torch

            with quiet(), torch.no_grad():
                model = ov.convert_model(art.module, example_input=export_inputs(art, ctx))
            source, weights, notes = "torch", art.precision, art.notes
        save_ir(model, path)
        seconds = time.perf_counter() - t0
        return OpenVinoArtifact(
            path=path,
            precision=self.after(ArtifactState(precision=weights)).precision,
            inference_precision=precision,
            performance_hint=performance_hint(ctx.scenario),
            source=source,
            notes=(*notes, f"openvino from={source} convert_s={seconds:.1f}"),
        )


@register_pass
class OvInt8(Pass):
    """NNCF post-training int8 of an OpenVINO model; see the module docstring for the arguments."""

    name = "ov-int8"
    consumes = ("openvino",)
    produces = "openvino"
    implicit_from: ClassVar[dict[str, str]] = {"torch": "openvino", "onnx": "openvino"}
    summary = "NNCF post-training int8 on OpenVINO; " + _OV_INT8_FORMS

    def __init__(
        self,
        *,
        batches: int | None = None,
        bias: str | None = None,
        preset: str | None = None,
        ignore: str | None = None,
    ) -> None:
        self.batches: int = calibration_batches(self.name, batches)
        self.bias: str = "fast" if bias is None else check_choice(self.name, "bias", bias, BIAS_CORRECTIONS)
        self.preset: str = (
            "performance" if preset is None else check_choice(self.name, "preset", preset, PRESETS)
        )
        self.ignore: str | None = (
            None
            if ignore is None
            else check_choice(self.name, "ignore", ignore, ("ends", *WEIGHTED_OP_TYPES))
        )
        given = [
            *([str(batches)] if batches is not None else []),
            *([f"bias={bias}"] if bias is not None else []),
            *([f"preset={preset}"] if preset is not None else []),
            *([f"ignore={ignore}"] if ignore is not None else []),
        ]
        self.arg = ":".join(given) or None

    @classmethod
    def from_arg(cls, arg: str | None) -> Self:
        """``N``, ``bias=...``, ``preset=...``, ``ignore=...``, in any order, separated by ':'."""
        if arg is None:
            return cls()
        options: dict[str, Any] = {}
        for token in arg.split(":"):
            key, eq, value = token.partition("=")
            if not eq:
                try:
                    options["batches"] = int(token)
                except ValueError:
                    raise PipelineError(
                        f"ov-int8 argument {token!r} not understood; use {_OV_INT8_FORMS}"
                    ) from None
            elif key in ("bias", "preset", "ignore"):
                options[key] = value
            else:
                raise PipelineError(f"ov-int8 option {key!r} unknown; use {_OV_INT8_FORMS}")
        return cls(**options)

    def available(self) -> str | None:
        return missing("openvino", "nncf")

    def applies_to(self, device: Device) -> str | None:
        return openvino_unavailable(device) or missing("nncf")

    def refuses(self, state: ArtifactState) -> str | None:
        if state.precision != "fp32":
            return (
                f"ov-int8 quantizes the fp32 model; this one is {state.precision}: "
                "for bf16 on the ops int8 leaves, put openvino:bf16 after ov-int8"
            )
        return super().refuses(state)

    def after(self, state: ArtifactState) -> ArtifactState:
        return state.evolve(precision="int8")

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, OpenVinoArtifact)
        import nncf
        import openvino as ov

        t0 = time.perf_counter()
        model = ov.Core().read_model(str(art.path))
        items = [tuple(numpy_inputs(model, batch)) for batch in ctx.calibration(self.batches)]
        ignored = self._ignored_scope(model, nncf)
        with quiet():
            quantized = nncf.quantize(
                model,
                nncf.Dataset(items),
                preset=nncf.QuantizationPreset.MIXED
                if self.preset == "mixed"
                else nncf.QuantizationPreset.PERFORMANCE,
                subset_size=len(items),
                fast_bias_correction=self.bias == "fast",
                **({"ignored_scope": ignored} if ignored is not None else {}),
            )
        path = save_ir(quantized, Path(ctx.workdir) / "model.ov-int8.xml")
        counted = quantized_weighted_ops(quantized)
        seconds = time.perf_counter() - t0
        note = (
            f"nncf batches={self.batches} bias={self.bias} preset={self.preset} "
            f"ignore={self.ignore or 'none'} quantized {counted} quantize_s={seconds:.1f}"
        )
        return art.evolve(path=path, precision="int8", notes=(*art.notes, note))

    def _ignored_scope(self, model: Any, nncf: Any) -> Any:
        if self.ignore is None:
            return None
        if self.ignore != "ends":
            return nncf.IgnoredScope(types=[self.ignore], validate=False)
        weighted = [
            op.get_friendly_name()
            for op in model.get_ordered_ops()
            if op.get_type_name() in WEIGHTED_OP_TYPES
        ]
        return nncf.IgnoredScope(names=sorted({weighted[0], weighted[-1]})) if weighted else None


def quantized_weighted_ops(model: Any) -> str:
    """``Convolution=12/14 ...``: per weighted op type, those fed by a FakeQuantize (int8) of all in the graph."""
    done: dict[str, int] = {}
    total: dict[str, int] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in WEIGHTED_OP_TYPES:
            continue
        total[kind] = total.get(kind, 0) + 1
        if any(_fed_by_fake_quantize(op.input_value(i).get_node()) for i in range(op.get_input_size())):
            done[kind] = done.get(kind, 0) + 1
    return " ".join(f"{k}={done.get(k, 0)}/{n}" for k, n in sorted(total.items())) or "none"


def _fed_by_fake_quantize(node: Any) -> bool:
    """Whether a weighted op's input comes from a FakeQuantize, directly or through a Convert/Reshape."""
    for _ in range(3):
        if node.get_type_name() == "FakeQuantize":
            return True
        if (
            node.get_type_name() not in ("Convert", "Reshape", "Transpose", "Subtract", "Multiply")
            or not node.get_input_size()
        ):
            return False
        node = node.input_value(0).get_node()
    return False
