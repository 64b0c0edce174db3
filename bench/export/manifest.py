"""manifest.json of an export: what a deployment needs to know about the files beside it.

- what the model takes and gives (name, shape, dtype of each input and output, the
  free batch axis named), read from the written file;
- how it was made: model, size, pipeline and its passes, batch size, device, seed,
  and the artifact's own notes (exporter, execution provider);
- what it measured, copied from the run's row: latency percentiles, throughput,
  build and first-call time, memory, energy, fidelity against fp32 (PSNR, max abs
  error, cosine); empty for a model built afresh, which was never measured;
- what this export reproduces: the written file run here on the same seeded inputs
  against the fp32 reference (``verification``), beside the row's figures;
- where: the row's ``hw_id`` and the fingerprint of the machine that measured it (from
  env.json), and this machine's fingerprint when it is another machine;
- versions: the packages and genbench commit of this export and of the run.

Every file is listed with its size and SHA-256, so a copy can be checked. Non-finite
numbers are written as the strings "inf" / "-inf" (an exact PSNR is infinite) and NaN
as null: JSON has neither.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.export.build import Built, FromRun
from bench.export.deployable import Deployable

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: the row's measured numbers a deployment cares about (bench.results.schema names and units)
MEASURED_COLUMNS: tuple[str, ...] = (
    "status", "runtime", "precision", "scenario", "n_samples", "latency_ms_p50", "latency_ms_p90",
    "latency_ms_p99", "latency_ms_mean", "latency_ci95_rel", "noisy", "contended", "throughput_items_s",
    "item", "first_call_ms", "build_s", "peak_device_mem_mb", "peak_device_reserved_mb", "peak_host_rss_mb",
    "rss_baseline_mb", "nvml_process_mem_mb", "model_bytes", "params", "gflops_per_item", "achieved_gflops",
    "pct_of_peak", "energy_j_per_item", "avg_power_w", "threads", "started_at", "notes",
    # a serving cell's (bench.harness.serve): what the batcher it was measured with did
    "target_qps", "achieved_qps", "queue_ms_p50", "queue_ms_p99", "mean_batch", "max_queue_delay_ms",
    "slo_p99_ms", "slo_met", "goodput_qps", "peak_qps", "best_batch_size",
)  # fmt: skip
FIDELITY_COLUMNS: tuple[str, ...] = ("psnr_db", "max_abs_err", "cosine", "fidelity_ok")


def json_safe(value: Any) -> Any:
    """Nested values as strict JSON: NaN as None, infinities as "inf"/"-inf", paths as text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def file_entry(path: Path, root: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.relative_to(root)), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def build_manifest(
    built: Built,
    deployable: Deployable,
    verification: dict[str, Any],
    out: Path,
    source: FromRun | None,
    triton: dict[str, Any],
) -> dict[str, Any]:
    """The manifest as a dict (``write_manifest`` writes it); every file under ``out`` it names is hashed."""
    from bench.measure.environment import git_sha, package_versions
    from bench.measure.fingerprint import hardware_fingerprint

    here = hardware_fingerprint(built.device)
    request, spec = built.request, built.spec
    artifact = built.artifact
    manifest: dict[str, Any] = {
        "genbench_export": FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": {
            "name": spec.name,
            "size": built.cell.size,
            "family": spec.family,
            "workload": spec.workload,
            "item": spec.item,
        },
        "pipeline": {
            "text": built.cell.pipeline.text,
            "passes": [step.spec for step in built.cell.pipeline.passes],
        },
        "batch_size": request.batch_size,
        "device": str(built.device),
        "seed": request.seed,
        "artifact": {
            "exported": deployable.exported,
            "kind": deployable.kind,
            "format": deployable.format,
            "reason": deployable.reason,
            "precision": getattr(artifact, "precision", None),
            "exporter": getattr(artifact, "exporter", None) or None,
            "provider": getattr(artifact, "provider", None),
            "files": [file_entry(p, out) for p in deployable.files],
            "notes": list(deployable.notes),
        },
        "inputs": [t.to_json() for t in deployable.signature.inputs] if deployable.signature else [],
        "outputs": [t.to_json() for t in deployable.signature.outputs] if deployable.signature else [],
        "verification": verification,
        "triton": triton,
    }
    manifest |= _measured(source, verification)
    manifest["hardware"] = _hardware(source, here)
    manifest["versions"] = {
        "export": {"python": sys.version.split()[0], "packages": package_versions(), "git_sha": git_sha()},
        "run": (
            {
                "python": source.env.get("python"),
                "packages": source.env.get("packages"),
                "git_sha": source.row.get("git_sha") or source.env.get("git_sha"),
            }
            if source is not None
            else None
        ),
    }
    return manifest


def _measured(source: FromRun | None, verification: dict[str, Any]) -> dict[str, Any]:
    """The row's numbers and fidelity, with the run and cell they come from; and whether the export
    reproduces the row's error (its max abs error within 1.5x the row's, plus 1e-6 for rounding)."""
    if source is None:
        return {"source": {"kind": "fresh"}, "measured": None, "fidelity": None}
    row = source.row
    fidelity = {c: row.get(c) for c in FIDELITY_COLUMNS}
    recorded = row.get("max_abs_err")
    if verification.get("ran") and isinstance(recorded, (int, float)) and math.isfinite(recorded):
        verification["within_recorded_error"] = bool(verification["max_abs_err"] <= 1.5 * recorded + 1e-6)
    return {
        "source": {
            "kind": "run",
            "run": str(source.path),
            "run_id": source.run_id,
            "cell_id": row.get("cell_id"),
        },
        "measured": {c: row.get(c) for c in MEASURED_COLUMNS},
        "fidelity": fidelity,
    }


def _hardware(source: FromRun | None, here: dict[str, Any]) -> dict[str, Any]:
    """Where the numbers were measured (the row's hw_id, env.json's fingerprint) and where this export ran."""
    if source is None:
        return {"measured_on": None, "exported_on": here, "same_machine": None}
    fingerprint = source.env.get("fingerprint") if isinstance(source.env.get("fingerprint"), dict) else None
    measured = {
        "hw_id": source.row.get("hw_id"),
        "device": source.row.get("device"),
        "device_name": source.row.get("device_name"),
        "host": source.row.get("host"),
        "fingerprint": fingerprint,
    }
    same = source.row.get("hw_id") == here["hw_id"]
    return {"measured_on": measured, "exported_on": None if same else here, "same_machine": same}


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    path = out / MANIFEST
    path.write_text(json.dumps(json_safe(manifest), indent=2, allow_nan=False) + "\n")
    return path
