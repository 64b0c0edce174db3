"""Reading a finished run back: every command that reads results goes through ``load_run``.

So bad input is caught in one place and reported as one line (``RunError``, which
the CLI turns into exit code 2): a missing, corrupted or cut-off ``cells.csv``, a
table of another schema version, numbers no column can hold, samples that point
at cells that do not exist. Only CSV and JSON are read, never pickle or eval.

``manifest.json`` (see ``bench.results.writer``) is the commit point of a run
folder: where it names a table's bytes and their SHA-256, only those bytes are
read, so the rows of a later flush that was killed before its manifest are
ignored. A table that no longer starts with the bytes its manifest names was
changed after it was written (edited by hand, copied over) and is read as a
folder without a manifest is: whole, and refused when its last row was cut off.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import RunError
from bench.results.schema import (
    CALL_PHASES,
    CELL_COLUMNS,
    COLUMNS_SINCE,
    DEFAULT_SCENARIO,
    DEFAULT_WORKLOAD,
    EXTRA_TABLES,
    SAMPLE_COLUMNS,
    SAMPLE_DEFAULTS,
    SCHEMA_VERSION,
    STATUSES,
    apply_schema,
)
from bench.results.writer import MANIFEST

#: what a copy of a run (a baseline) holds; the manifest last, so it commits what was copied before it
TABLE_FILES = ("cells.csv", "cells.parquet", "cells.json", "samples.csv", "env.json", MANIFEST)
_INT64 = (-(2**63), 2**63 - 1)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest.json checked, or None for a folder without one (older runs, fixtures)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RunError(f"{path} is not readable JSON: {exc}".splitlines()[0]) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise RunError(f"{path} is not a genbench manifest (no files object)")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise RunError(
            f"{path} is from schema version {version}; this genbench reads versions 1 to {SCHEMA_VERSION}"
        )
    for name, entry in files.items():
        if not (
            isinstance(entry, dict)
            and all(_count(entry.get(key)) for key in ("rows", "bytes"))
            and isinstance(entry.get("sha256"), str)
        ):
            raise RunError(f"{path} has a malformed entry for {name}")
    return manifest


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _committed(table: Path) -> tuple[bytes, int | None]:
    """The bytes of ``table`` its folder's manifest vouches for, and the rows it says they hold.

    (the whole file, None) where there is no manifest entry or the file no longer starts with
    the bytes the manifest names.
    """
    manifest = read_manifest(table.parent)
    try:
        data = table.read_bytes()
    except OSError as exc:
        raise RunError(f"cannot read {table}: {exc.strerror or exc}") from None
    entry = manifest["files"].get(table.name) if manifest is not None else None
    if entry is None:
        return data, None
    size = entry["bytes"]
    if len(data) >= size and hashlib.sha256(data[:size]).hexdigest() == entry["sha256"]:
        return data[:size], entry["rows"]
    return data, None


def _csv_frame(table: Path) -> pd.DataFrame:
    """A CSV table as pandas reads it, from the bytes the manifest commits; checks every row is whole."""
    data, rows = _committed(table)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunError(f"{table} is not a readable CSV: {exc}".splitlines()[0]) from None
    _check_whole_rows(table, text)
    try:
        frame = pd.read_csv(io.StringIO(text), keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RunError(f"{table} is not a readable CSV: {exc}".splitlines()[0]) from None
    if rows is not None and len(frame) != rows:
        raise RunError(f"{table} holds {len(frame)} rows where {MANIFEST} says {rows}")
    return frame


def _check_whole_rows(table: Path, text: str) -> None:
    """Refuse a row with fewer or more fields than the header, and a last row without a line end.

    pandas reads a short row with its missing fields empty, so a file cut off inside its last
    row would read as a cell with half a number; genbench ends every row with a line end.
    """
    if not text.strip():
        return  # pandas says "no columns to parse"
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        for record in reader:
            if record and len(record) != len(header):
                raise RunError(
                    f"{table} line {reader.line_num} has {len(record)} fields where the header has "
                    f"{len(header)}" + ("" if text.endswith(("\n", "\r")) else " (the file is cut off)")
                )
    except csv.Error as exc:
        raise RunError(f"{table} is not a readable CSV: {exc}".splitlines()[0]) from None
    if not text.endswith(("\n", "\r")):
        raise RunError(f"{table} is cut off: its last row has no line end")


def _typed(frame: pd.DataFrame, columns: dict[str, str], table: Path) -> pd.DataFrame:
    """``apply_schema``, with a value no column can hold (text in a number, an integer beyond
    64 bits) named by column and row in one line instead of an OverflowError traceback."""
    try:
        return apply_schema(frame, columns)
    except (ValueError, TypeError, OverflowError):
        pass
    for column, dtype in columns.items():
        for row, value in enumerate(frame[column]):
            try:
                apply_schema(pd.DataFrame({column: [value]}), {column: dtype})
            except (ValueError, TypeError, OverflowError):
                wanted = (
                    f"a whole number from {_INT64[0]} to {_INT64[1]}"
                    if dtype == "Int64"
                    else f"a {dtype} value"
                )
                raise RunError(f"{table} column {column} row {row + 1}: '{value}' is not {wanted}") from None
    raise RunError(f"{table} has malformed values")  # a mix no single value explains


def read_cells(path: Path) -> pd.DataFrame:
    """Read a run's cells.csv (or the folder holding it) back with the schema's dtypes.

    Raises ValueError (a RunError) with one line naming the problem when the file is missing,
    unreadable, cut off or of another schema.
    """
    table = path / "cells.csv" if path.is_dir() else path
    if not table.is_file():
        raise RunError(f"no cells.csv at {path}")
    frame = _csv_frame(table)
    absent = [c for c in COLUMNS_SINCE if c not in frame.columns]
    if absent:  # added in one go: a column at a time fragments a frame of 100+ columns (pandas warns)
        fill = {"workload": DEFAULT_WORKLOAD, "scenario": DEFAULT_SCENARIO}
        added = pd.DataFrame({c: [fill.get(c, pd.NA)] * len(frame) for c in absent}, index=frame.index)
        frame = pd.concat([frame, added], axis=1)
    missing = [c for c in CELL_COLUMNS if c not in frame.columns]
    if missing:
        raise RunError(f"{table} has another schema: missing columns {', '.join(missing)}")
    return _typed(frame, CELL_COLUMNS, table)


def read_samples(path: Path) -> pd.DataFrame:
    """Read a run's samples.csv (or the folder holding it) with the schema's dtypes; RunError when unreadable."""
    table = path / "samples.csv" if path.is_dir() else path
    if not table.is_file():
        raise RunError(f"no samples.csv at {path}")
    samples = _csv_frame(table)
    for column, value in SAMPLE_DEFAULTS.items():  # a samples.csv from before schema 5
        if column not in samples.columns:
            samples[column] = value
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise RunError(f"{table} has another schema: missing columns {', '.join(missing)}")
    return _typed(samples, SAMPLE_COLUMNS, table)


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
        """cell_id -> latencies in ms of the workload's whole calls, in iteration order.

        A forward call, a generation or a sampling run (``CALL_PHASES``); the steps inside
        them (``phase_samples``) are left out.
        """
        if self.samples.empty:
            return {}
        calls = self.samples[self.samples["phase"].isin(CALL_PHASES)]
        ordered = calls.sort_values(["cell_id", "iter"])
        return {
            int(cid): group["latency_ms"].to_numpy(dtype=float)
            for cid, group in ordered.groupby("cell_id", sort=False)
        }

    def table(self, name: str) -> pd.DataFrame:
        """One of a serving run's extra tables (``EXTRA_TABLES``: requests.csv, probes.csv, ...), read on
        demand with its schema's dtypes; empty (with its columns) where the run has none."""
        return read_table(self.path, name)

    def tpot_by_cell(self) -> dict[int, np.ndarray]:
        """cell_id -> each timed generation's TPOT in ms (the mean of its decode steps), in iteration order.

        The same figure as the cell's ``tpot_ms`` (bench.measure.generation: (t_new - t_1) /
        (new - 1)), one per generation, so compare can bootstrap it like the whole calls.
        Cells without decode steps (other workloads, one new token, older runs) are absent.
        """
        if self.samples.empty:
            return {}
        decode = self.samples[self.samples["phase"] == "decode"]
        if decode.empty:
            return {}
        means = decode.groupby(["cell_id", "iter"], sort=True)["latency_ms"].mean()
        return {
            int(cid): group.to_numpy(dtype=float) for cid, group in means.groupby(level="cell_id", sort=False)
        }


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """An extra table of a run folder (``EXTRA_TABLES``), empty where the run did not write it."""
    if name not in EXTRA_TABLES:
        raise RunError(f"no table {name!r}; a run's extra tables are {', '.join(EXTRA_TABLES)}")
    columns = EXTRA_TABLES[name]
    table = Path(folder) / name
    if not table.is_file():
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    frame = _csv_frame(table)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RunError(f"{table} has another schema: missing columns {', '.join(missing)}")
    return _typed(frame, columns, table)


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
    samples = read_samples(path)
    if samples.isna().any().any():
        raise RunError(f"{path} has empty values")
    orphans = sorted(set(int(c) for c in samples["cell_id"]) - cell_ids)
    if orphans:
        raise RunError(f"{path} has samples for cell_id {orphans[0]}, which cells.csv does not hold")
    return samples if not samples.empty else empty
