"""Merging runs from several hosts into one run folder.

``merge_runs`` concatenates runs into one tidy table. Rows keep their
``run_id``, ``host`` and ``device`` columns, which is what keeps machines apart;
``cell_id`` is renumbered so it is unique across the merged runs, and
``samples.csv`` is remapped with it, so a merged folder is an ordinary run
folder that ``compare`` and ``report`` read like any other.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import RunError
from bench.results.schema import CELL_COLUMNS, SAMPLE_COLUMNS
from bench.results.store import Run, load_run
from bench.results.writer import ResultWriter


def merge_runs(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Concatenate runs: cells with cell_ids renumbered 0..n-1 in order, samples remapped, envs listed.

    The same run given twice would double its cells, so it is refused.
    """
    if not runs:
        raise RunError("nothing to merge")
    seen: dict[tuple[str, ...], Path] = {}
    for run in runs:
        for ident in _run_ids(run):
            if ident in seen:
                raise RunError(f"run {ident[0]} on {ident[1]} is in both {seen[ident]} and {run.path}")
            seen[ident] = run.path
    cells_parts, sample_parts, envs = [], [], []
    next_id = 0
    for run in runs:
        old_ids = [int(c) for c in run.cells["cell_id"]]
        mapping = {old: next_id + i for i, old in enumerate(old_ids)}
        next_id += len(old_ids)
        part = run.cells.copy()
        part["cell_id"] = pd.array([mapping[c] for c in old_ids], dtype="Int64")
        cells_parts.append(part)
        if not run.samples.empty:
            samples = run.samples.copy()
            samples["cell_id"] = pd.array([mapping[int(c)] for c in samples["cell_id"]], dtype="Int64")
            sample_parts.append(samples)
        for source in run.sources:
            envs.append({"source": str(run.path), **source} if "source" not in source else source)
    cells = pd.concat(cells_parts, ignore_index=True)
    samples = (
        pd.concat(sample_parts, ignore_index=True)
        if sample_parts
        else pd.DataFrame({c: pd.Series(dtype=t) for c, t in SAMPLE_COLUMNS.items()})
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    env = {
        "run_id": f"merged-{stamp}",
        "merged_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hosts": sorted({str(h) for h in cells["host"].dropna()}),
        "runs": envs,
    }
    return cells, samples, env


def _run_ids(run: Run) -> set[tuple[str, ...]]:
    """(run_id, host) pairs of a run's rows: what makes one source run distinct from another."""
    return {(str(r), str(h)) for r, h in zip(run.cells["run_id"], run.cells["host"], strict=True)}


def write_run(out: Path, cells: pd.DataFrame, samples: pd.DataFrame, env: dict[str, Any]) -> None:
    """Write tables in exactly the format of a measured run, through the same writer."""
    writer = ResultWriter(out)
    writer.write_env(env)
    writer.rows = [
        {k: (None if _missing(v) else v) for k, v in row.items()}
        for row in cells[list(CELL_COLUMNS)].to_dict(orient="records")
    ]
    writer.samples = [
        (int(c), int(i), float(ms))
        for c, i, ms in zip(samples["cell_id"], samples["iter"], samples["latency_ms"], strict=True)
    ]
    writer.flush()


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def merge_to(paths: list[Path], out: Path, *, force: bool = False) -> Run:
    """Load ``paths``, merge them and write the result to ``out``; returns the merged run."""
    out = Path(out)
    if (out / "cells.csv").exists() and not force:
        raise RunError(f"{out} already holds a run; choose another --out or pass --force")
    runs = [load_run(p) for p in paths]
    if any(run.path.resolve() == out.resolve() for run in runs):
        raise RunError(f"--out {out} is one of the runs being merged")
    cells, samples, env = merge_runs(runs)
    write_run(out, cells, samples, env)
    return load_run(out)
