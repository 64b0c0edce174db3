"""Merging runs from several hosts into one run folder.

``merge_runs`` concatenates runs into one tidy table. Rows keep their
``run_id``, ``host`` and ``device`` columns, which is what keeps machines apart;
``cell_id`` is renumbered so it is unique across the merged runs, and
``samples.csv`` is remapped with it, so a merged folder is an ordinary run
folder that ``compare`` and ``report`` read like any other.

Columns this genbench does not know (a user's own column, one from a newer genbench
of the same schema version) are refused, with one line naming them and their file,
rather than kept or dropped. Dropping them silently loses data the user put there.
Keeping them is not possible honestly: ``load_run`` reads a table into the schema's
columns (what compare and report read), the writer writes exactly a measured run's
format, and a column filled on one source's rows and empty on another's would read
as "not measured" where it was merely unknown. The user removes the column, or
merges with the genbench that wrote it.

Where a merge may write (``check_out``, said in merge's --help): ``--out`` must be a
new folder, an empty one, or one holding only files merge itself writes
(``WRITTEN_FILES``: the tables, env.json, manifest.json); those are replaced only
with ``--force``, whether or not a cells.csv is among them (an env.json left by a
killed merge, a stray samples.csv). A folder holding anything else, a subfolder
included, is refused: merge never writes beside files it did not write. ``--out`` at
a regular file is refused too.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import EnvironmentProblem, RunError
from bench.results.schema import CELL_COLUMNS, SAMPLE_COLUMNS
from bench.results.store import Run, load_run
from bench.results.writer import WRITTEN_FILES, ResultWriter

#: what each table merge reads may hold: anything else is refused (module docstring)
KNOWN_COLUMNS: dict[str, tuple[str, ...]] = {
    "cells.csv": tuple(CELL_COLUMNS),
    "samples.csv": tuple(SAMPLE_COLUMNS),
}


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
        (int(c), int(i), str(phase), int(step), float(ms))
        for c, i, phase, step, ms in zip(
            samples["cell_id"],
            samples["iter"],
            samples["phase"],
            samples["step"],
            samples["latency_ms"],
            strict=True,
        )
    ]
    writer.flush()


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def unknown_columns(run: Run) -> None:
    """Refuse a source table with columns this genbench does not know (module docstring: why)."""
    for table, known in KNOWN_COLUMNS.items():
        path = run.path / table
        if not path.is_file():
            continue
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), [])
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise RunError(f"cannot read the header of {path}: {exc}".splitlines()[0]) from None
        extra = [c for c in header if c not in known]
        if extra:
            raise RunError(
                f"{path} has columns this genbench does not know ({', '.join(extra)}); merge would lose "
                "them: remove them, or merge with the genbench that wrote them"
            )


def _own_file(name: str) -> bool:
    """A file merge writes into its --out, or a temp file the writer leaves when killed."""
    if name in WRITTEN_FILES:
        return True
    stems = (*WRITTEN_FILES, "write-check")
    return name.endswith(".tmp") and any(name.startswith(f".{stem}.") for stem in stems)


def _names(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_out(out: Path, *, force: bool = False) -> None:
    """Where merge may write (module docstring): a new or empty folder, or with ``force`` one that
    holds only merge's own files; RunError naming what is in the way otherwise."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder")
    if not out.exists():
        return
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read {out}: {exc.strerror or exc}") from None
    others = [name for name in entries if not _own_file(name)]
    if others:
        raise RunError(
            f"--out {out} holds files merge does not write ({_names(others)}): merge into a new or empty folder"
        )
    own = [name for name in entries if name in WRITTEN_FILES]
    if own and not force:
        if "cells.csv" in own:
            raise RunError(f"{out} already holds a run; choose another --out or pass --force")
        raise RunError(
            f"--out {out} already holds {_names(own)} (no cells.csv); choose another --out "
            "or pass --force to replace them"
        )


def load_sources(paths: list[Path], out: Path, *, force: bool = False) -> list[Run]:
    """The runs to merge into ``out``, read and checked: ``out`` may be written (``check_out``), is
    none of them, and their tables hold only known columns. Nothing is written yet."""
    out = Path(out)
    check_out(out, force=force)
    runs = [load_run(p) for p in paths]
    if any(run.path.resolve() == out.resolve() for run in runs):
        raise RunError(f"--out {out} is one of the runs being merged")
    for run in runs:
        unknown_columns(run)
    return runs


def write_merged(runs: list[Run], out: Path) -> Run:
    """Merge runs checked by ``load_sources`` and write them to ``out``; returns the merged run."""
    cells, samples, env = merge_runs(runs)
    write_run(Path(out), cells, samples, env)
    return load_run(Path(out))


def merge_to(paths: list[Path], out: Path, *, force: bool = False) -> Run:
    """Load ``paths``, merge them and write the result to ``out``; returns the merged run."""
    return write_merged(load_sources(paths, out, force=force), out)
