"""One cell in a worker process: the job arrives as JSON text, the row and raw samples go back as JSON bytes.

The worker is forked from multiprocessing's forkserver (bench.harness.isolation),
which is itself a fresh interpreter that has imported this module and nothing
else has run in: no model, no thread pool, no CUDA context, no compile cache in
memory. So each cell starts from the same state, and what it leaves (allocator
pools, Inductor's in-memory caches, OpenMP threads, a corrupted CUDA context, a
leaked 2 GiB buffer) dies with it.

What comes back is plain data only (``json``): the worker runs the user's model and
third-party runtimes, and nothing they could put in an object is unpickled by the
runner. ``rss_baseline_mb`` is the worker's RSS before it built anything: the
interpreter, torch and the libraries (``peak_host_rss_mb`` minus it is the cell's
own). On CUDA the context is created before the cell, timed, and named in the notes,
so it is never inside a timed region.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
import torch

from bench.core.device import parse_device
from bench.harness.config import RunConfig
from bench.harness.executor import InProcessExecutor
from bench.harness.plan import Cell, resolve_models
from bench.harness.reference import SharedReferences
from bench.harness.result import CellResult, PhaseSample, Tables
from bench.results.schema import EXTRA_TABLES
from optimizers.registry import parse_pipeline
from reference_models import MODELS


def job_for(
    cell: Cell,
    config: RunConfig,
    device: str,
    run_id: str,
    scratch: Path,
    log: Path,
    artifacts_dir: Path | None,
) -> dict[str, Any]:
    """What a worker needs to rebuild and run ``cell``: names and numbers only."""
    custom = cell.spec.name not in MODELS  # a user's model (pkg.mod:factory, hf:PATH) is resolved by its path
    return {
        "config": config.to_json(),
        "device": device,
        "run_id": run_id,
        "cell_id": cell.cell_id,
        "model": cell.spec.name,
        "custom": custom,
        "size": cell.size,
        "pipeline": cell.pipeline.text,
        "batch_size": cell.batch_size,
        "repeat": cell.repeat,
        "target_qps": cell.target_qps,
        "scratch": str(scratch),
        "log": str(log),
        "artifacts_dir": str(artifacts_dir) if artifacts_dir is not None else None,
        # the worker's parent is the fork server, not the runner: the runner (which may hold a CUDA
        # context of its own) must not count as another process on the cell's GPU
        "runner_pid": os.getpid(),
    }


def _redirect_output(log: str) -> None:
    """The worker's stdout and stderr (the model's prints, library warnings) go to the cell's log file."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_job(
    job: dict[str, Any], artifacts_dir: Path | None
) -> tuple[dict[str, Any], list[float], list[PhaseSample], Tables]:
    """Run the job's cell here; its row and samples (the executor turns every failure into a row)."""
    config = RunConfig.from_json(job["config"])  # InProcessExecutor applies config.threads
    device = parse_device(job["device"])
    notes = []
    if device.is_cuda:
        t0 = time.perf_counter()
        torch.zeros(1, device=device.torch_name)
        torch.cuda.synchronize(device.torch_name)
        notes.append(f"cuda context {time.perf_counter() - t0:.2f} s (outside the timed region)")
    # after the context: its host memory is the runtime's, like the interpreter's and torch's
    empty_rss_mb = psutil.Process().memory_info().rss / 2**20
    name = job["model"]
    models, custom = ((), (name,)) if job["custom"] else ((name,), ())
    (spec,) = resolve_models(models, custom, config.weights)
    cell = Cell(
        job["cell_id"], spec, job["size"], parse_pipeline(job["pipeline"]), job["batch_size"], job["repeat"],
        job.get("target_qps"),
    )  # fmt: skip
    scratch = Path(job["scratch"])
    executor = InProcessExecutor(
        config,
        device,
        job["run_id"],
        artifacts_dir,
        references=SharedReferences(device, config.seed, scratch / "references"),
        scratch=scratch,
        isolation="process",
        run_pids=(int(job["runner_pid"]),),
    )
    result: CellResult = executor.run(cell)
    if result.footprint is not None:
        result = replace(result, footprint=replace(result.footprint, rss_baseline_mb=empty_rss_mb))
    if notes:
        joined = "; ".join(n for n in (result.outcome.notes, *notes) if n)
        result = replace(result, outcome=replace(result.outcome, notes=joined))
    return result.row(), list(result.samples_ms), list(result.phase_samples), result.tables


def _plain(value: Any) -> Any:
    """numpy scalars (a stat computed with numpy) as Python numbers, for json."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not plain data")


def encode_reply(
    row: dict[str, Any] | None,
    samples: list[float],
    error: str | None = None,
    phases: list[PhaseSample] | None = None,
    tables: Tables | None = None,
) -> bytes:
    """The reply as JSON; NaN and infinities kept (Python's json reads them back)."""
    # tables go column-major (names once, rows as lists): a long load's requests are 100,000s of rows
    packed = {
        name: {
            "columns": list(EXTRA_TABLES[name]),
            "rows": [[r.get(c) for c in EXTRA_TABLES[name]] for r in rows],
        }
        for name, rows in (tables or {}).items()
    }
    reply = {"row": row, "samples": samples, "phases": phases or [], "tables": packed, "error": error}
    return json.dumps(reply, default=_plain).encode()


def worker_main(job_text: str, reply: Connection) -> None:
    """The worker process's entry point (multiprocessing target)."""
    job = json.loads(job_text)
    os.setsid()  # its own process group: a timeout kills what it started (compile workers) with it
    _redirect_output(job["log"])
    artifacts = job.get("artifacts_dir")
    try:
        row, samples, phases, tables = run_job(job, Path(artifacts) if artifacts else None)
        payload = encode_reply(row, samples, phases=phases, tables=tables)
    except BaseException as exc:  # planning the cell failed here (a model or plugin that no longer imports)
        payload = encode_reply(None, [], f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    reply.send_bytes(payload)
    reply.close()


def decode_reply(
    data: bytes,
) -> tuple[dict[str, Any] | None, list[float], list[PhaseSample], str | None, Tables]:
    """The worker's reply back as (row, samples, phase samples, error, tables); ValueError when it is not
    what a worker sends."""
    reply = json.loads(data.decode())
    if not isinstance(reply, dict):
        raise ValueError("the reply is not a JSON object")
    row, samples, error = reply.get("row"), reply.get("samples", []), reply.get("error")
    if row is not None and not isinstance(row, dict):
        raise ValueError("the reply's row is not an object")
    if not isinstance(samples, list) or not all(isinstance(x, (int, float)) for x in samples):
        raise ValueError("the reply's samples are not numbers")
    if error is not None and not isinstance(error, str):
        raise ValueError("the reply's error is not text")
    phases = reply.get("phases", [])
    if not isinstance(phases, list) or not all(_is_phase_sample(p) for p in phases):
        raise ValueError("the reply's phase samples are not (phase, iter, step, ms)")
    kept = [(str(p), int(i), int(s), float(ms)) for p, i, s, ms in phases if not math.isnan(ms)]
    tables = reply.get("tables", {})
    if not isinstance(tables, dict):
        raise ValueError("the reply's tables are not an object")
    typed: Tables = {}
    for name, packed in tables.items():
        if name not in EXTRA_TABLES:
            raise ValueError(f"the reply names an unknown table {name!r}")
        columns, rows = (
            (packed.get("columns"), packed.get("rows")) if isinstance(packed, dict) else (None, None)
        )
        if columns != list(EXTRA_TABLES[name]):
            raise ValueError(f"the reply's {name} does not have its schema's columns")
        if not isinstance(rows, list) or not all(
            isinstance(r, list) and len(r) == len(columns) for r in rows
        ):
            raise ValueError(f"the reply's {name} rows are not lists of its {len(columns)} columns")
        typed[name] = tuple(dict(zip(columns, r, strict=True)) for r in rows)
    return row, [float(x) for x in samples if not math.isnan(x)], kept, error, typed


def _is_phase_sample(item: Any) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 4
        and isinstance(item[0], str)
        and all(isinstance(x, int) and not isinstance(x, bool) for x in item[1:3])
        and isinstance(item[3], (int, float))
    )
