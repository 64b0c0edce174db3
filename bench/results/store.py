"""Reading a finished run back: every command that reads results goes through ``load_run``.

So bad input is caught in one place and reported as one line (``RunError``, which
the CLI turns into exit code 2): a missing or corrupted ``cells.csv``, a table of
another schema version, samples that point at cells that do not exist. Only CSV
and JSON are read, never pickle or eval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import RunError
from bench.results.schema import (
    CELL_COLUMNS,
    COLUMNS_SINCE,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    STATUSES,
    apply_schema,
)

TABLE_FILES = ("cells.csv", "cells.parquet", "cells.json", "samples.csv", "env.json")


def read_cells(path: Path) -> pd.DataFrame:
    """Read a run's cells.csv (or the folder holding it) back with the schema's dtypes.

    Raises ValueError with one line naming the problem when the file is missing,
    unreadable or of another schema.
    """
    csv = path / "cells.csv" if path.is_dir() else path
    if not csv.is_file():
        raise ValueError(f"no cells.csv at {path}")
    try:
        frame = pd.read_csv(csv, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{csv} is not a readable CSV: {exc}".splitlines()[0]) from None
    for column in COLUMNS_SINCE:
        if column not in frame.columns:
            frame[column] = pd.NA
    missing = [c for c in CELL_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv} has another schema: missing columns {', '.join(missing)}")
    try:
        return apply_schema(frame, CELL_COLUMNS)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{csv} has malformed values: {exc}".splitlines()[0]) from None


def read_samples(path: Path) -> pd.DataFrame:
    csv = path / "samples.csv" if path.is_dir() else path
    if not csv.is_file():
        raise ValueError(f"no samples.csv at {path}")
    return apply_schema(pd.read_csv(csv), SAMPLE_COLUMNS)


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
