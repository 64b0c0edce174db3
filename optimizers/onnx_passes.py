"""Passes that leave PyTorch: export to ONNX, and pick the ONNX Runtime execution provider.

``onnx`` turns a torch artifact into an ``.onnx`` file; the runtime for ONNX
artifacts is ONNX Runtime, so ``onnx`` alone is already "run it on ORT".
``ort[:cpu|cuda|trt]`` chooses the execution provider; on a torch artifact it
exports first (``ort`` == ``onnx+ort``).

onnx, onnxscript and onnxruntime are imported inside the passes, never at
module import: registering these passes must not pull them in.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import torch

from bench.core.artifact import Artifact, OnnxArtifact, TorchArtifact, present_inputs
from bench.core.device import Device
from bench.core.onnx_names import input_name, output_names
from bench.core.optional import missing
from bench.core.text import one_line
from bench.runtimes.ort import PROVIDERS, default_provider, provider_unavailable
from optimizers.base import Pass, PassContext, check_choice, register_pass
from optimizers.state import ArtifactState

#: opset of the TorchScript exporter: 17 has LayerNormalization and is run by every onnxruntime >= 1.14
TORCHSCRIPT_OPSET = 17
#: above this many parameter bytes, weights go to an external ``.data`` file (protobuf's 2 GiB limit)
EXTERNAL_DATA_BYTES = 1_500_000_000
Exporter = Literal["torchscript", "dynamo"]
EXPORTERS: tuple[str, ...] = get_args(Exporter)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence library warnings (tracer, deprecation) and progress prints that say nothing about the benchmark.

    onnxruntime's calibrators ``print`` to stdout, which would tear the CLI's progress display.
    """
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _tensor_outputs(output: Any) -> int:
    """How many tensors a forward call returns (a tensor, or a flat tuple/list/dict of them)."""
    if isinstance(output, torch.Tensor):
        return 1
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return sum(isinstance(o, torch.Tensor) for o in output)
    raise TypeError(f"cannot export a model returning {type(output).__name__}")


def export_inputs(art: TorchArtifact, ctx: PassContext) -> tuple[torch.Tensor, ...]:
    """The example inputs as the module expects them, with a batch of at least 2.

    Tracers specialize size-1 dimensions (torch.export's 0/1 specialization,
    broadcast folding in tracing), so a batch-1 example would bake batch 1 into
    the graph; exporting with the batch repeated keeps the batch axis symbolic.
    """
    inputs = present_inputs(ctx.example_inputs, ctx.device.torch_name, art.input_dtype, art.channels_last)
    if inputs and inputs[0].dim() > 0 and inputs[0].shape[0] == 1:
        inputs = tuple(torch.cat([t, t]) if t.dim() > 0 else t for t in inputs)
    return inputs


def _export_torchscript(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    in_names: list[str],
    out_names: list[str],
) -> None:
    dynamic = {name: {0: "batch"} for name in (*in_names, *out_names)}
    with quiet(), torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            opset_version=TORCHSCRIPT_OPSET,
            input_names=in_names,
            output_names=out_names,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )


def _export_dynamo(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    in_names: list[str],
    out_names: list[str],
    external: bool,
) -> None:
    batch = torch.export.Dim("batch", min=1)
    shapes = tuple({0: batch} if t.dim() > 0 else None for t in inputs)
    with quiet(), torch.no_grad():
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=True,
            input_names=in_names,
            output_names=out_names,
            dynamic_shapes=shapes,
            external_data=external,
            optimize=True,
        )


@register_pass
class Onnx(Pass):
    """Export a torch artifact to ONNX; ``onnx:torchscript`` or ``onnx:dynamo`` forces one exporter.

    Exporter order, measured on this project's models (torch 2.13, onnx 1.23,
    onnxruntime 1.32, batch 8, ``small``): the TorchScript exporter exported
    all three (DCGAN 1.3 s, VAE 3.4 s, UNet 4.3 s); the dynamo exporter took
    10.6 s on DCGAN and failed on the VAE and the UNet ("only 4D query, key, and
    value are supported" for their 3-D scaled_dot_product_attention). Where both
    worked, ORT ran the two graphs equally fast (within this shared machine's
    noise: 128 vs 115 ms on DCGAN). So TorchScript goes first and
    dynamo is the fallback (for models the tracer cannot handle, and for a torch
    that has dropped ``dynamo=False``); which one ran is in ``exporter`` and notes.

    Every input and output gets a dynamic batch axis. Precision follows the torch
    artifact: fp32 and fp16 are exported as they are (ORT runs fp16 graphs on CPU
    and CUDA); bf16 is refused with a clear error, because ONNX Conv/ConvTranspose
    take no bfloat16 before opset 22 and ORT's CPU EP has no bf16 kernels.
    A torch.compile'd artifact cannot be exported: ``compile`` and ``onnx`` are
    alternative routes, not steps of one pipeline. channels_last needs nothing:
    the export is layout-agnostic and ORT picks its own layout (NCHWc/NHWC).
    """

    name = "onnx"
    consumes = ("torch",)
    produces = "onnx"
    summary = "export to ONNX (TorchScript exporter, dynamo fallback); runs on ONNX Runtime"
    exporters: ClassVar[tuple[str, ...]] = EXPORTERS
    argument = "exporter"

    def __init__(self, *, exporter: Exporter | None = None) -> None:
        self.exporter = None if exporter is None else check_choice(self.name, "exporter", exporter, EXPORTERS)
        self.arg = exporter

    def available(self) -> str | None:
        return missing("onnx", "onnxscript") if self.exporter == "dynamo" else missing("onnx")

    def refuses(self, state: ArtifactState) -> str | None:
        if state.compiled:
            return (
                "onnx cannot export a module that is already compiled (by compile, cudagraph or pt2e-int8): "
                "they and onnx are two routes, not steps of one pipeline; drop one"
            )
        if state.precision == "bf16":
            return (
                "onnx cannot export bf16: ONNX Conv has no bfloat16 before opset 22 and onnxruntime's CPU EP "
                "has no bf16 kernels; export fp32 (or fp16)"
            )
        if state.sparse24:
            return "onnx cannot export 2:4 semi-structured weights (no ONNX op runs them): drop sparse24"
        return super().refuses(state)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, TorchArtifact)
        module = art.module
        inputs = export_inputs(art, ctx)
        with torch.inference_mode():
            n_out = _tensor_outputs(module(*inputs))
        in_names = [input_name(i) for i in range(len(inputs))]
        out_names = output_names(n_out)
        external = sum(p.numel() * p.element_size() for p in module.parameters()) > EXTERNAL_DATA_BYTES
        path = Path(ctx.workdir) / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)

        order = (self.exporter,) if self.exporter else EXPORTERS
        failures: list[str] = []
        for exporter in order:
            t0 = time.perf_counter()
            try:
                if exporter == "torchscript":
                    _export_torchscript(module, inputs, path, in_names, out_names)
                else:
                    _export_dynamo(module, inputs, path, in_names, out_names, external)
                _check(path)
            except Exception as exc:
                failures.append(f"{exporter} failed: {one_line(exc, 160)}")
                continue
            note = f"exporter={exporter}" + (f" ({'; '.join(failures)})" if failures else "")
            seconds = time.perf_counter() - t0
            return OnnxArtifact(
                path=path,
                precision=art.precision,
                exporter=exporter,
                notes=(*art.notes, note, f"export_s={seconds:.1f}"),
                spinning=ctx.scenario != "server",
            )
        raise RuntimeError(f"ONNX export failed: {'; '.join(failures)}")


def _check(path: Path) -> None:
    """onnx.checker by path, so models over 2 GiB (external data) are checked too."""
    import onnx

    onnx.checker.check_model(str(path))


@register_pass
class Ort(Pass):
    """Run the ONNX artifact on ONNX Runtime with a chosen execution provider.

    ``ort`` picks from the device (CPU EP on cpu, CUDA EP on cuda); ``ort:cpu``,
    ``ort:cuda`` and ``ort:trt`` force one. On a torch artifact it exports first,
    so ``ort`` alone is ``onnx+ort``.
    """

    name = "ort"
    consumes = ("onnx",)
    produces = "onnx"
    summary = "run on ONNX Runtime; ort:cpu / ort:cuda / ort:trt picks the execution provider"
    implicit_from: ClassVar[dict[str, str]] = {"torch": "onnx"}
    configures_runtime = True  # it picks the execution provider, and its applies_to checks that one
    argument = "provider"

    def __init__(self, *, provider: str | None = None) -> None:
        self.provider = (
            None if provider is None else check_choice(self.name, "provider", provider, tuple(PROVIDERS))
        )
        self.arg = provider

    def available(self) -> str | None:
        return missing("onnxruntime")

    def applies_to(self, device: Device) -> str | None:
        return provider_unavailable(self.provider, device)

    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        art = self.require(artifact, OnnxArtifact)
        provider = self.provider or default_provider(ctx.device)
        return art.evolve(provider=provider, notes=(*art.notes, f"provider={provider}"))
