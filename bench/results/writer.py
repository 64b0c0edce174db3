"""Writing a run's tables: cells (CSV, Parquet, JSON), raw samples, the environment and the manifest.

Every table is rewritten atomically (temp file + rename) after each cell, so a
crash or Ctrl-C never leaves a half-written file. Tables are small (one row per
cell), so rewriting is cheap. Rows are kept in ``cell_id`` order, whatever order the
cells end in (a Ray run's cells end side by side, bench.cluster.driver).

The four data tables are replaced one after another, so a kill between two renames
would leave them holding different numbers of rows. ``manifest.json``, written last
(atomically too), is the one commit point: it names the schema version, the rows
each data file held when the flush finished, and the bytes and SHA-256 of each file.
Readers (``bench.results.store``) read only what the manifest vouches for, so the
rows of a flush that did not finish are ignored.

A machine that refuses a write (disk full, read-only mount, no permission) raises
``EnvironmentProblem`` with one line naming the file; the temp file is removed and
the previous complete files and manifest stay as they were.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.errors import EnvironmentProblem, RunError
from bench.results.schema import (
    DEFAULT_WORKLOAD,
    EXTRA_TABLES,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    apply_schema,
    cells_frame,
)

MANIFEST = "manifest.json"
#: what the writer writes, data tables in the order a flush replaces them: cells before samples,
#: so a flush that stops half-way never leaves samples pointing at a cell that cells.csv lacks
DATA_FILES = ("cells.csv", "cells.parquet", "cells.json", "samples.csv")
WRITTEN_FILES = (*DATA_FILES, *EXTRA_TABLES, "env.json", MANIFEST)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _reason(exc: OSError) -> str:
    """The machine's one-line reason: the OS's words (``No space left on device``) where it gave them."""
    if exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> tuple[int, str]:
    """Write through ``write(tmp_path)`` then rename over ``path`` (atomic on POSIX).

    Returns the size and SHA-256 of what was written, for the manifest. An OSError (disk full,
    read-only, no permission) becomes ``EnvironmentProblem`` naming ``path``; the temp file is
    removed and ``path`` keeps its previous content.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {path}: {_reason(exc)}") from None
    os.close(fd)
    try:
        write(Path(tmp))
        data = Path(tmp).read_bytes()
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EnvironmentProblem(f"cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data), hashlib.sha256(data).hexdigest()


def _json_value(value: Any) -> Any:
    """A value JSON can hold: None for missing and NaN, "inf"/"-inf" for infinities, numpy scalars unwrapped."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value


def _json_tree(value: Any) -> Any:
    """``_json_value`` through dicts, lists and tuples: env.json holds nested readings."""
    if isinstance(value, dict):
        return {str(k): _json_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_tree(v) for v in value]
    return _json_value(value)


class ResultWriter:
    """Accumulates cells and samples of one run and rewrites its tables after each cell."""

    def __init__(self, out_dir: Path) -> None:
        """Make ``out_dir`` and check it can be written, so a refusing folder stops the run before
        its first cell, not after; temp files a killed writer left there are removed."""
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise RunError(f"{self.out_dir} is a file, not a folder")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.out_dir, prefix=".write-check.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write to {self.out_dir}: {_reason(exc)}") from None
        self._remove_stale_temp_files()
        self.rows: list[dict[str, Any]] = []
        self.env: dict[str, Any] = {}  # what env.json holds, less the schema version
        self.samples: list[tuple[int, int, str, int, float]] = []  # SAMPLE_COLUMNS
        self.tables: dict[
            str, list[dict[str, Any]]
        ] = {}  # EXTRA_TABLES: a serving cell's requests, probes, ...

    def _remove_stale_temp_files(self) -> None:
        """Only this writer's own temp names (``.cells.csv.<random>.tmp``): nothing else in the folder."""
        for name in (*WRITTEN_FILES, "write-check"):
            for stale in self.out_dir.glob(f".{name}.*.tmp"):
                try:
                    stale.unlink()
                except OSError as exc:
                    raise EnvironmentProblem(f"cannot remove {stale}: {_reason(exc)}") from None

    def write_env(self, env: dict[str, Any]) -> None:
        """env.json as strict JSON: NaN is null and infinities "inf"/"-inf", as in cells.json."""
        self.env = dict(env)
        payload = _json_tree({"schema_version": SCHEMA_VERSION, **env})
        text = json.dumps(payload, indent=2, default=str, allow_nan=False)
        _atomic_write(self.out_dir / "env.json", lambda p: p.write_text(text))

    def add_host_env(self, env: dict[str, Any]) -> None:
        """One more machine's environment in env.json's ``runs``, as a merged run lists its sources.

        A run measured on several machines (``--ray``) starts with an empty list and gains an
        entry as each machine (a Ray node, by ``ray_node_id``, else its hostname) reports its first
        cell of each device; compare, report and project read the list as they read a merge's.
        """
        key = (env.get("ray_node_id") or env.get("hostname"), env.get("device"))
        runs = list(self.env.get("runs", []))
        if any((r.get("ray_node_id") or r.get("hostname"), r.get("device")) == key for r in runs):
            return
        self.write_env(
            {
                **self.env,
                "runs": [*runs, env],
                "hosts": sorted({str(r.get("hostname")) for r in [*runs, env]}),
            }
        )

    def add(
        self,
        row: dict[str, Any],
        latencies_ms: list[float],
        phase_samples: Iterable[tuple[str, int, int, float]] = (),
        tables: dict[str, Iterable[dict[str, Any]]] | None = None,
    ) -> None:
        """Keep a finished cell and flush. When the flush is refused the cell stays in memory (a
        later flush writes it) and the files on disk stay at the previous manifest.

        ``latencies_ms`` are the workload's whole calls (phase = the row's workload);
        ``phase_samples`` the (phase, iter, step, ms) of the steps inside them; ``tables`` the rows of
        a serving cell's extra tables (``EXTRA_TABLES``), each given the cell's id."""
        cell_id = row["cell_id"]
        call_phase = row.get("workload") or DEFAULT_WORKLOAD
        bisect.insort(self.rows, row, key=lambda r: r["cell_id"])
        self.samples.extend((cell_id, i, call_phase, 0, ms) for i, ms in enumerate(latencies_ms))
        self.samples.extend((cell_id, i, phase, step, ms) for phase, i, step, ms in phase_samples)
        for name, rows in (tables or {}).items():
            if name not in EXTRA_TABLES:
                raise KeyError(f"no table {name!r} in the schema")
            self.tables.setdefault(name, []).extend({**r, "cell_id": cell_id} for r in rows)
        self.flush()

    def frame(self) -> pd.DataFrame:
        return cells_frame(self.rows)

    def flush(self) -> None:
        """Rewrite every data table, then the manifest that commits them."""
        frame = self.frame()
        samples = apply_schema(pd.DataFrame(self.samples, columns=list(SAMPLE_COLUMNS)), SAMPLE_COLUMNS)
        records = [{k: _json_value(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")]
        writers: dict[str, Callable[[Path], Any]] = {
            "cells.csv": lambda p: frame.to_csv(p, index=False),
            "cells.parquet": lambda p: frame.to_parquet(p, index=False),
            "cells.json": lambda p: p.write_text(json.dumps(records, indent=1, allow_nan=False)),
            "samples.csv": lambda p: samples.to_csv(p, index=False),
        }
        rows = {"cells.csv": len(frame), "cells.parquet": len(frame), "cells.json": len(frame)}
        rows["samples.csv"] = len(samples)
        for name, table_rows in self.tables.items():  # only the tables some cell had rows for
            columns = EXTRA_TABLES[name]
            table = apply_schema(pd.DataFrame(table_rows, columns=list(columns)), columns)
            writers[name] = lambda p, t=table: t.to_csv(p, index=False)
            rows[name] = len(table)
        files: dict[str, dict[str, Any]] = {}
        for name in (*DATA_FILES, *self.tables):
            size, digest = _atomic_write(self.out_dir / name, writers[name])
            files[name] = {"rows": rows[name], "bytes": size, "sha256": digest}
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "cells": len(frame),
            "samples": len(samples),
            "files": files,
        }
        text = json.dumps(manifest, indent=1)
        _atomic_write(self.out_dir / MANIFEST, lambda p: p.write_text(text))
