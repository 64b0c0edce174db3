"""Writing a run's tables: cells (CSV, Parquet, JSON), raw samples and the environment.

Every table is rewritten atomically (temp file + rename) after each cell, so a
crash or Ctrl-C leaves complete files holding every finished cell, never a
half-written line. Tables are small (one row per cell), so rewriting is cheap.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results.schema import SAMPLE_COLUMNS, SCHEMA_VERSION, apply_schema, cells_frame


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
