"""The rebuilt artifact in the form a deployment loads: an ONNX file, a TensorRT engine, or a torch.export program.

- ONNX: the file the last pass wrote (``model.int8.onnx`` for int8), copied as
  ``model.onnx`` with its external weights, which keep their name (``model.onnx.data``):
  the graph refers to them by it.
- TensorRT: the serialized engine's bytes as ``model.plan``. Its inputs and outputs
  are the ONNX model's it was built from (TensorRT keeps their names; its precision
  flags change the kernels, not the I/O types).
- torch: ``torch.export.export`` of the module with the batch axis left free (the
  example batch doubled when it is 1, as the ONNX export does, since tracers
  specialize size-1 axes), then ``torch.export.save`` to ``model.pt2``. When a free
  batch axis does not export, the batch is fixed at the cell's and the notes say so;
  when nothing exports, no file is written and ``reason`` says why in one line. A
  torch.compile'd module (compile, cudagraph, pt2e-int8) is refused without trying:
  exporting the module under it would hand out the uncompiled model as the measured one.

``verify`` runs what was written, as a deployment would load it, on the cell's seeded
inputs and compares it with the fp32 reference, so the manifest can say whether the
exported file reproduces the error the row recorded.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.artifact import OnnxArtifact, TensorRTArtifact, TorchArtifact, present_inputs
from bench.core.onnx_names import input_name, output_names
from bench.core.text import one_line
from bench.export.build import Built
from bench.export.signature import Signature, onnx_signature, tensor_specs

FORMATS: dict[str, str] = {"onnx": "onnx", "tensorrt": "tensorrt_plan", "torch": "torch.export"}
TORCH_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
ENGINE_FILE = "model.plan"
BATCH_SYMBOL = "batch"


@dataclass(frozen=True)
class Deployable:
    """What was written: the files (the model first), its signature, or why nothing could be."""

    kind: str
    files: tuple[Path, ...] = ()
    signature: Signature | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def exported(self) -> bool:
        return self.reason is None and bool(self.files)

    @property
    def format(self) -> str | None:
        return FORMATS.get(self.kind) if self.exported else None


def write_deployable(built: Built, out: Path) -> Deployable:
    """The artifact of ``built`` written under ``out`` in its deployable form."""
    artifact = built.artifact
    if isinstance(artifact, OnnxArtifact):
        model, *weights = artifact.files()
        files = (_copy(model, out / ONNX_FILE), *(_copy(w, out / w.name) for w in weights))
        return Deployable("onnx", files, onnx_signature(files[0]), notes=artifact.notes)
    if isinstance(artifact, TensorRTArtifact):
        engine = _copy(artifact.path, out / ENGINE_FILE)
        if built.last_onnx is None:
            return Deployable(
                "tensorrt", (engine,), None, notes=(*artifact.notes, "no ONNX source to read I/O from")
            )
        return Deployable("tensorrt", (engine,), onnx_signature(built.last_onnx.path), notes=artifact.notes)
    if isinstance(artifact, TorchArtifact):
        return export_torch(artifact, built.reference.inputs, out / TORCH_FILE, built.device.torch_name)
    return Deployable(
        getattr(artifact, "kind", type(artifact).__name__),
        reason=f"genbench has no deployable form for {getattr(artifact, 'kind', '?')} artifacts",
    )


def _copy(source: Path, target: Path) -> Path:
    shutil.copy2(source, target)
    return target


def export_torch(
    artifact: TorchArtifact, inputs: tuple[torch.Tensor, ...], path: Path, device: str
) -> Deployable:
    """``torch.export`` of the module with a free batch axis (else the cell's batch), saved to ``path``."""
    if artifact.compiled:
        return Deployable(
            "torch",
            reason="a torch.compile'd module (compile, cudagraph, pt2e-int8) exists only in the process "
            "that compiled it and torch.export has no form for it; export the pipeline without compile "
            "(and compile after loading)",
        )
    presented = present_inputs(inputs, device, artifact.input_dtype, artifact.channels_last)
    doubled = presented
    if presented and presented[0].dim() > 0 and presented[0].shape[0] == 1:
        doubled = tuple(torch.cat([t, t]) if t.dim() > 0 else t for t in presented)
    batch = torch.export.Dim(BATCH_SYMBOL, min=1)
    shapes = tuple({0: batch} if t.dim() > 0 else None for t in doubled)
    notes: list[str] = []
    program = None
    try:
        with torch.no_grad():
            program = torch.export.export(artifact.module, doubled, dynamic_shapes=shapes)
        example, symbol = doubled, BATCH_SYMBOL
    except Exception as exc:
        notes.append(
            f"batch fixed at {presented[0].shape[0]}: a free batch axis did not export ({one_line(exc, 200)})"
        )
    if program is None:
        try:
            with torch.no_grad():
                program = torch.export.export(artifact.module, presented)
            example, symbol = presented, None
        except Exception as exc:
            return Deployable("torch", reason=f"torch.export failed: {one_line(exc, 300)}")
    try:
        with torch.no_grad():
            outputs = _tensors(program.module()(*example))
        with _quiet_torch():
            torch.export.save(program, str(path))
    except Exception as exc:
        path.unlink(missing_ok=True)
        return Deployable(
            "torch", reason=f"the exported program could not be run or saved: {one_line(exc, 300)}"
        )
    signature = Signature(
        tensor_specs(example, [input_name(i) for i in range(len(example))], symbol),
        tensor_specs(outputs, output_names(len(outputs)), symbol),
    )
    return Deployable("torch", (path,), signature, notes=(*artifact.notes, *notes))


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """torch.export's archive code warns about its own weight grouping ("No complete tensor found in the
    group"), which says nothing about the model; other warnings still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No complete tensor found", category=UserWarning)
        yield


def _tensors(output: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(output, torch.Tensor):
        return (output,)
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return tuple(o for o in output if isinstance(o, torch.Tensor))
    raise TypeError(f"the model returns {type(output).__name__}, not tensors")


def verify(built: Built, deployable: Deployable) -> dict[str, Any]:
    """The written model run on the cell's seeded inputs, against the fp32 reference: PSNR, max abs error,
    cosine; or why it could not be run here."""
    from bench.measure.fidelity import compare_outputs

    if not deployable.exported:
        return {"ran": False, "reason": "nothing was exported"}
    try:
        output = _run_written(built, deployable)
        fidelity = compare_outputs(built.reference.output, output)
    except Exception as exc:
        return {"ran": False, "reason": one_line(exc, 300)}
    return {
        "ran": True,
        "device": str(built.device),
        "psnr_db": fidelity.psnr_db,
        "max_abs_err": fidelity.max_abs_err,
        "cosine": fidelity.cosine,
    }


def _run_written(built: Built, deployable: Deployable) -> torch.Tensor:
    from bench.runtimes import first_tensor, load

    model_file = deployable.files[0]
    artifact = built.artifact
    if deployable.kind == "torch":
        assert isinstance(artifact, TorchArtifact)
        with _quiet_torch():
            program = torch.export.load(str(model_file))
        inputs = present_inputs(
            built.reference.inputs, built.device.torch_name, artifact.input_dtype, artifact.channels_last
        )
        with torch.no_grad():
            return first_tensor(program.module()(*inputs)).detach().float().cpu()
    if deployable.kind == "onnx":
        assert isinstance(artifact, OnnxArtifact)
        written: Any = artifact.evolve(path=model_file)
    else:
        written = TensorRTArtifact(path=model_file, precision=artifact.precision)
    runtime = load(written, built.device)
    return runtime.to_torch(runtime.run(runtime.prepare(built.reference.inputs)))
