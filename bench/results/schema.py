"""The tidy result tables and their writers.

One row per measured cell, one column per variable, units in column names.
Every table is rewritten atomically (temp file + rename) after each cell, so a
crash or Ctrl-C leaves complete files holding every finished cell, never a
half-written line. Tables are small (one row per cell), so rewriting is cheap.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_VERSION = 2

#: column -> pandas dtype. Nullable dtypes, because a skipped cell has no latency.
CELL_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "cell_id": "Int64",
    "started_at": "string",
    "host": "string",
    "device": "string",
    "device_name": "string",
    "model": "string",
    "size": "string",
    "family": "string",
    "pipeline": "string",
    "runtime": "string",
    "batch_size": "Int64",
    "precision": "string",
    "status": "string",  # ok | skipped | error | oom
    "reason": "string",
    "n_samples": "Int64",
    "latency_ms_p50": "float64",
    "latency_ms_p90": "float64",
    "latency_ms_p99": "float64",
    "latency_ms_mean": "float64",
    "latency_ms_std": "float64",
    "latency_ms_min": "float64",
    "latency_ci95_rel": "float64",
    "noisy": "boolean",
    "throughput_items_s": "float64",
    "item": "string",
    "first_call_ms": "float64",
    "transfer_h2d_ms": "float64",
    "transfer_d2h_ms": "float64",
    "includes_transfers": "boolean",
    "build_s": "float64",
    "peak_device_mem_mb": "float64",
    "peak_device_reserved_mb": "float64",
    "peak_host_rss_mb": "float64",
    "nvml_process_mem_mb": "float64",
    "model_bytes": "Int64",
    "params": "Int64",
    "gflops_per_item": "float64",
    "achieved_gflops": "float64",
    "pct_of_peak": "float64",
    "energy_j_per_item": "float64",
    "avg_power_w": "float64",
    "sm_clock_mhz_start": "float64",
    "sm_clock_mhz_end": "float64",
    "gpu_temp_c_start": "float64",
    "gpu_temp_c_end": "float64",
    "psnr_db": "float64",
    "max_abs_err": "float64",
    "cosine": "float64",
    "fidelity_ok": "boolean",
    "torch_version": "string",
    "git_sha": "string",
    "notes": "string",
}
#: columns added after schema 1, with the version that added them: a table written before
#: them (a nightly baseline recorded by an older genbench) reads back with them empty.
COLUMNS_SINCE: dict[str, int] = {"peak_device_reserved_mb": 2}
SAMPLE_COLUMNS: dict[str, str] = {"cell_id": "Int64", "iter": "Int64", "latency_ms": "float64"}
STATUSES = ("ok", "skipped", "error", "oom")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(tmp_path)`` then rename over ``path`` (atomic on POSIX)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cells_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with every schema column, in schema order, with schema dtypes."""
    rows = list(rows)
    for row in rows:
        unknown = set(row) - set(CELL_COLUMNS)
        if unknown:
            raise KeyError(f"columns not in the schema: {sorted(unknown)}")
        if row.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    frame = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    return apply_schema(frame, CELL_COLUMNS)


def apply_schema(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    frame = frame[list(columns)].copy()
    for col, dtype in columns.items():
        if dtype == "float64":
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype("float64")
        else:
            frame[col] = frame[col].astype(dtype)
    return frame


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value


class ResultWriter:
    """Accumulates cells and samples of one run and rewrites its tables after each cell."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        self.samples: list[tuple[int, int, float]] = []

    def write_env(self, env: dict[str, Any]) -> None:
        payload = {"schema_version": SCHEMA_VERSION, **env}
        _atomic_write(
            self.out_dir / "env.json", lambda p: p.write_text(json.dumps(payload, indent=2, default=str))
        )

    def add(self, row: dict[str, Any], latencies_ms: list[float]) -> None:
        cell_id = row["cell_id"]
        self.rows.append(row)
        self.samples.extend((cell_id, i, ms) for i, ms in enumerate(latencies_ms))
        self.flush()

    def frame(self) -> pd.DataFrame:
        return cells_frame(self.rows)

    def flush(self) -> None:
        frame = self.frame()
        samples = apply_schema(pd.DataFrame(self.samples, columns=list(SAMPLE_COLUMNS)), SAMPLE_COLUMNS)
        _atomic_write(self.out_dir / "cells.csv", lambda p: frame.to_csv(p, index=False))
        _atomic_write(self.out_dir / "cells.parquet", lambda p: frame.to_parquet(p, index=False))
        records = [{k: _json_value(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")]
        _atomic_write(self.out_dir / "cells.json", lambda p: p.write_text(json.dumps(records, indent=1)))
        _atomic_write(self.out_dir / "samples.csv", lambda p: samples.to_csv(p, index=False))


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
