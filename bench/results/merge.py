"""Reading finished runs back, and merging runs from several hosts into one.

Every command that reads results (compare, report, merge, baseline) loads a run
through ``load_run``, so bad input is caught in one place and reported as one
line (``RunError``, which the CLI turns into exit code 2): a missing or
corrupted ``cells.csv``, a table of another schema version, samples that point
at cells that do not exist. Only CSV and JSON are read, never pickle or eval.

``merge_runs`` concatenates runs into one tidy table. Rows keep their
``run_id``, ``host`` and ``device`` columns, which is what keeps machines apart;
``cell_id`` is renumbered so it is unique across the merged runs, and
``samples.csv`` is remapped with it, so a merged folder is an ordinary run
folder that ``compare`` and ``report`` read like any other.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results.schema import (
    CELL_COLUMNS,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    STATUSES,
    ResultWriter,
    read_cells,
)

TABLE_FILES = ("cells.csv", "cells.parquet", "cells.json", "samples.csv", "env.json")


class RunError(ValueError):
    """A run folder that cannot be read as asked: one line naming the problem."""


@dataclass(frozen=True)
class Run:
    """One run folder read back: its cells, raw samples (maybe none) and environment."""

    path: Path
    cells: pd.DataFrame
    samples: pd.DataFrame
    env: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's id where env.json has one, else its folder name: what tables call it."""
        return str(self.env.get("run_id") or self.path.name)

    @property
    def sources(self) -> list[dict[str, Any]]:
        """The environment of each source run: one for a plain run, several for a merged one."""
        runs = self.env.get("runs")
        if isinstance(runs, list):
            return [r for r in runs if isinstance(r, dict)]
        return [self.env] if self.env else []

    def samples_by_cell(self) -> dict[int, np.ndarray]:
        """cell_id -> latencies in ms, in iteration order."""
        if self.samples.empty:
            return {}
        ordered = self.samples.sort_values(["cell_id", "iter"])
        return {
            int(cid): group["latency_ms"].to_numpy(dtype=float)
            for cid, group in ordered.groupby("cell_id", sort=False)
        }


def run_folder(path: Path) -> Path:
    """A run is named by its folder or by its cells.csv; both mean the folder."""
    return path.parent if path.suffix == ".csv" or path.is_file() else path


def load_run(path: Path) -> Run:
    """Read a run folder (or its cells.csv) and check it; raise RunError naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path} does not exist")
    folder = run_folder(path)
    try:
        cells = read_cells(path)
    except ValueError as exc:
        raise RunError(str(exc).splitlines()[0]) from None
    env = _read_env(folder / "env.json")
    if cells["cell_id"].isna().any():
        raise RunError(f"{folder / 'cells.csv'} has rows without a cell_id")
    duplicated = cells["cell_id"][cells["cell_id"].duplicated()]
    if not duplicated.empty:
        raise RunError(f"{folder / 'cells.csv'} repeats cell_id {int(duplicated.iloc[0])}")
    bad_status = sorted(set(cells["status"].dropna()) - set(STATUSES))
    if bad_status or cells["status"].isna().any():
        raise RunError(
            f"{folder / 'cells.csv'} has statuses {bad_status or ['<empty>']}, expected one of {STATUSES}"
        )
    samples = _read_samples(folder / "samples.csv", set(int(c) for c in cells["cell_id"]))
    return Run(path=folder, cells=cells, samples=samples, env=env)


def _read_env(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        env = json.loads(path.read_text())
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RunError(f"{path} is not readable JSON: {exc}".splitlines()[0]) from None
    if not isinstance(env, dict):
        raise RunError(f"{path} does not hold a JSON object")
    version = env.get("schema_version", SCHEMA_VERSION)
    # Older versions only lack columns added since (COLUMNS_SINCE), which read_cells fills in empty:
    # a baseline recorded by an older genbench stays comparable.
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise RunError(
            f"{path} is from schema version {version}; this genbench reads versions 1 to {SCHEMA_VERSION}"
        )
    return env


def _read_samples(path: Path, cell_ids: set[int]) -> pd.DataFrame:
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in SAMPLE_COLUMNS.items()})
    if not path.is_file():
        return empty
    try:
        samples = pd.read_csv(path)
        missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
        if missing:
            raise RunError(f"{path} has another schema: missing columns {', '.join(missing)}")
        samples = samples[list(SAMPLE_COLUMNS)]
        samples = samples.astype({"cell_id": "Int64", "iter": "Int64"})
        samples["latency_ms"] = pd.to_numeric(samples["latency_ms"], errors="raise").astype("float64")
    except RunError:
        raise
    except (ValueError, TypeError) as exc:  # pandas parser errors are ValueErrors
        raise RunError(f"{path} is not a readable samples table: {exc}".splitlines()[0]) from None
    if samples.isna().any().any():
        raise RunError(f"{path} has empty values")
    orphans = sorted(set(int(c) for c in samples["cell_id"]) - cell_ids)
    if orphans:
        raise RunError(f"{path} has samples for cell_id {orphans[0]}, which cells.csv does not hold")
    return samples if not samples.empty else empty


# ----------------------------------------------------------------------- merge
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
