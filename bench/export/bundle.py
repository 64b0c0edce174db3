"""One export, start to end: check the output folder, rebuild the cell, write the artifact, Triton, manifest.

The cell is built in a temporary folder (the passes write their ONNX files and engines
there) and only what a deployment needs is written to ``out``; the manifest goes last,
so a folder with a manifest.json is a finished export.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import EnvironmentProblem, UsageError
from bench.export.build import Built, CellRequest, FromRun, build
from bench.export.deployable import Deployable, verify, write_deployable
from bench.export.manifest import build_manifest, write_manifest
from bench.export.triton import MODEL_FILES, TritonError, TritonSettings, model_name, write_repository

TRITON_FOLDER = "triton"


@dataclass(frozen=True)
class ExportOptions:
    """The Triton configuration's choices: largest batch (None: the cell's) and queue delay."""

    max_batch: int | None = None
    max_queue_delay_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.max_batch is not None and self.max_batch < 1:
            raise UsageError(f"--max-batch must be 1 or more (got {self.max_batch})")
        if not 0 <= self.max_queue_delay_ms < float("inf"):
            raise UsageError(
                f"--max-queue-delay-ms must be a finite number >= 0 (got {self.max_queue_delay_ms})"
            )


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest: dict[str, Any]
    deployable: Deployable


def check_out(out: Path) -> None:
    """``out`` must be a new or empty folder: one line otherwise, before anything is built.

    Nothing is created here: the folder is made once the cell has been built, so an export
    refused for its input (an unknown size, a pipeline that does not apply) leaves nothing behind.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if out.is_dir():
        held = sorted(p.name for p in out.iterdir())
        if held:
            shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
            raise UsageError(f"--out {out} is not empty (holds {shown}); choose another --out or empty it")
        return
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"--out {out} lies under a file, not a folder")


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create --out {out}: {exc.strerror or exc}") from None
    if any(out.iterdir()):  # filled by someone else while the cell was built
        raise UsageError(f"--out {out} is no longer empty; choose another --out")


def export_cell(
    request: CellRequest, out: Path, options: ExportOptions, source: FromRun | None = None
) -> ExportResult:
    """Rebuild ``request``'s artifact and write the export into ``out`` (checked by ``check_out`` first)."""
    check_out(out)
    with tempfile.TemporaryDirectory(prefix="genbench-export-") as workdir:
        built = build(request, Path(workdir))
        _make_out(out)
        deployable = write_deployable(built, out)
        verification = verify(built, deployable)
        triton = write_triton(built, deployable, out, options)
    manifest = build_manifest(built, deployable, verification, out, source, triton)
    write_manifest(out, manifest)
    return ExportResult(out, manifest, deployable)


def write_triton(built: Built, deployable: Deployable, out: Path, options: ExportOptions) -> dict[str, Any]:
    """Triton's model repository for an ONNX model or a TensorRT engine; for others, why there is none."""
    if not deployable.exported:
        return {"written": False, "reason": "nothing was exported"}
    if deployable.kind not in MODEL_FILES:
        return {
            "written": False,
            "reason": f"Triton's layout is written for ONNX and TensorRT models, not {deployable.kind}",
        }
    if deployable.signature is None:
        return {"written": False, "reason": "the model's inputs and outputs are not known"}
    cell = built.cell
    name = model_name(f"{cell.spec.name}-{cell.size}-{cell.pipeline.text}-b{cell.batch_size}")
    provider = getattr(built.artifact, "provider", None)
    on_gpu = built.device.is_cuda and (deployable.kind == "tensorrt" or provider in ("cuda", "trt", None))
    profiles = tuple(sorted({*built.request.batch_sizes, cell.batch_size}))  # as the build's PassContext
    settings = TritonSettings(
        max_batch=options.max_batch or cell.batch_size,
        max_queue_delay_ms=options.max_queue_delay_ms,
        preferred_batch_sizes=profiles if deployable.kind == "tensorrt" else (cell.batch_size,),
        on_gpu=on_gpu,
        ort_tensorrt=provider == "trt",
    )
    try:
        folder = write_repository(
            out / TRITON_FOLDER, name, deployable.kind, deployable.files, deployable.signature, settings
        )
    except TritonError as exc:
        return {"written": False, "reason": str(exc)}
    notes = []
    if not deployable.signature.batched:
        notes.append("the model's first axis is fixed, so max_batch_size is 0 and Triton does not batch")
    if deployable.kind == "tensorrt":
        notes.append(
            f"the engine has optimization profiles for batch sizes {', '.join(map(str, profiles))} only: "
            "Triton's dynamic batcher may form other sizes up to max_batch_size, which the engine refuses"
        )
        if settings.max_batch > profiles[-1]:
            notes.append(
                f"max_batch_size {settings.max_batch} is above the engine's largest profile ({profiles[-1]}): "
                "Triton refuses to load it; export from a run with that batch size"
            )
    return {
        "written": True,
        "model_repository": TRITON_FOLDER,
        "model": name,
        "config": str((folder / "config.pbtxt").relative_to(out)),
        "max_batch_size": settings.max_batch if deployable.signature.batched else 0,
        "max_queue_delay_ms": options.max_queue_delay_ms,
        "notes": notes,
    }
