"""Baselines: a run's tables kept in the repository, for the nightly regression check.

``results/baselines/<NAME>/`` holds a plain copy of a run's tables (cells.csv,
cells.parquet, cells.json, samples.csv, env.json), so a baseline is read by the
same code as any run, and git shows what changed when one is replaced. NAME
defaults to the run's machine class (``bench.results.machine_class``).

A baseline is what every later night is judged against, so a run whose cells
shared the machine with other processes (``contended``, bench.measure.contention)
is refused: its latencies are partly the neighbour's, and a baseline that is too
slow hides real regressions for as long as it stays committed. Rows of older runs
have ``contended`` empty (not measured), which is not a refusal.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.core.errors import EnvironmentProblem, RunError
from bench.results.machine_class import DEFAULT_ROOT, NIGHTLY_THRESHOLD, check_name, machine_class
from bench.results.store import TABLE_FILES, Run, load_run

__all__ = [
    "DEFAULT_ROOT", "NIGHTLY_THRESHOLD", "baseline_dir", "contended_cells", "find_baseline", "list_baselines",
    "machine_class", "save_baseline",
]  # fmt: skip


def baseline_dir(root: Path, name: str) -> Path:
    return Path(root) / check_name(name)


def contended_cells(run: Run) -> int:
    """How many of the run's cells shared their CPU or GPU with another process while timed."""
    if "contended" not in run.cells.columns:
        return 0
    return int(run.cells["contended"].astype("boolean").fillna(False).astype(bool).sum())


def save_baseline(
    run_path: Path,
    *,
    root: Path = DEFAULT_ROOT,
    name: str | None = None,
    force: bool = False,
    allow_contended: bool = False,
) -> Path:
    """Copy a run's tables to ``root/NAME``.

    Refuses to replace a baseline unless ``force``, and to save a run with contended
    cells unless ``force`` or ``allow_contended`` (module docstring).
    """
    run = load_run(run_path)  # a baseline must be readable: check before copying
    name = check_name(name if name is not None else machine_class(run.env))
    dest = baseline_dir(root, name)
    if dest.resolve() == run.path.resolve():
        raise RunError(f"{run.path} is already the baseline {name!r} under {root}: nothing to save")
    contended = contended_cells(run)
    if contended and not (force or allow_contended):
        raise RunError(
            f"{contended} of {len(run.cells)} cells were contended (other processes shared the CPU or GPU "
            f"while they were timed) in {run.path}; re-run on a quiet machine or pass --force "
            "(or --allow-contended to keep a baseline's refusal to be replaced)"
        )
    if (dest / "cells.csv").exists() and not force:
        raise RunError(f"baseline {dest} exists; pass --force to replace it")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for file in TABLE_FILES:
            target = dest / file
            source = run.path / file
            if source.is_file():
                shutil.copyfile(source, target)
            elif target.exists():
                target.unlink()  # a stale table from the baseline being replaced
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write the baseline {dest}: {exc.strerror or exc}") from None
    return dest


def find_baseline(run: Run, *, root: Path = DEFAULT_ROOT, name: str | None = None) -> tuple[str, Path | None]:
    """The baseline for a run: (its name, its folder, or None when there is none yet)."""
    name = check_name(name if name is not None else machine_class(run.env))
    dest = baseline_dir(root, name)
    return name, (dest if (dest / "cells.csv").is_file() else None)


def list_baselines(root: Path = DEFAULT_ROOT) -> list[tuple[str, Run | str]]:
    """Each baseline folder under ``root`` with its run, or the one-line reason it cannot be read."""
    found: list[tuple[str, Run | str]] = []
    if not Path(root).is_dir():
        return found
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        try:
            found.append((folder.name, load_run(folder)))
        except RunError as exc:
            found.append((folder.name, str(exc)))
    return found
