"""Baselines: a run's tables kept in the repository, for the nightly regression check.

``results/baselines/<NAME>/`` holds a plain copy of a run's tables (cells.csv,
cells.parquet, cells.json, samples.csv, env.json), so a baseline is read by the
same code as any run, and git shows what changed when one is replaced.

NAME defaults to the run's *machine class*, e.g. ``cpu-amd-epyc-7763-64-core-processor-4t``
or ``cuda-nvidia-h100-80gb-hbm3``: CPU model and torch thread count, or GPU
model. Why a class and not a host name: CI runners get a fresh host name every
night, but the same class of machine should give the same numbers, and a
baseline from another class would report the hardware difference as a
regression.

The nightly check uses a wider threshold than ``compare`` does by default
(NIGHTLY_THRESHOLD): the bootstrap interval covers the noise within one run, not
the drift between two runs on different days (DESIGN.md records up to +-20% run
to run on a shared machine), and a nightly that cries wolf gets ignored.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.text import slug

if TYPE_CHECKING:  # bench.results.merge imports pandas; the CLI imports this module to build its --help
    from bench.results.merge import Run

DEFAULT_ROOT = Path("results") / "baselines"
NIGHTLY_THRESHOLD = 0.25
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def machine_class(env: dict[str, Any]) -> str:
    """The class of machine a run's numbers belong to (module docstring); RunError when it cannot be told."""
    from bench.results.merge import RunError

    if isinstance(env.get("runs"), list):  # a merged folder: one class if all its runs share it
        classes = sorted({machine_class(source) for source in env["runs"] if isinstance(source, dict)})
        if len(classes) != 1:
            shown = ", ".join(classes) or "none"
            raise RunError(f"a merged run spans machine classes ({shown}): name its baseline with --name")
        return classes[0]
    if not env:
        raise RunError(
            "the run has no env.json, so its machine class is unknown: name the baseline with --name"
        )
    device = str(env.get("device") or "cpu")
    if device.startswith("cuda"):
        suffix = device.partition(":")[2]
        index = int(suffix) if suffix.isdigit() else 0
        gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)]
        match = [g for g in gpus if g.get("index") == index] or gpus[:1]
        if not match:
            raise RunError(f"env.json names device {device} but lists no GPU: name the baseline with --name")
        return f"cuda-{slug(str(match[0].get('name', 'gpu')))}"
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    threads = cpu.get("torch_threads") or cpu.get("logical_cores") or 0
    return f"{slug(device.split(':')[0])}-{slug(str(cpu.get('model', 'unknown')))}-{threads}t"


def check_name(name: str) -> str:
    """A baseline name is one folder name: letters, digits, '.', '_' and '-' (no path tricks)."""
    from bench.results.merge import RunError

    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise RunError(f"baseline name {name!r} must be letters, digits, '.', '_' or '-'")
    return name


def baseline_dir(root: Path, name: str) -> Path:
    return Path(root) / check_name(name)


def save_baseline(
    run_path: Path, *, root: Path = DEFAULT_ROOT, name: str | None = None, force: bool = False
) -> Path:
    """Copy a run's tables to ``root/NAME``; refuses to replace a baseline unless ``force``."""
    from bench.results.merge import TABLE_FILES, RunError, load_run

    run = load_run(run_path)  # a baseline must be readable: check before copying
    name = check_name(name if name is not None else machine_class(run.env))
    dest = baseline_dir(root, name)
    if (dest / "cells.csv").exists() and not force:
        raise RunError(f"baseline {dest} exists; pass --force to replace it")
    dest.mkdir(parents=True, exist_ok=True)
    for file in TABLE_FILES:
        target = dest / file
        source = run.path / file
        if source.is_file():
            shutil.copyfile(source, target)
        elif target.exists():
            target.unlink()  # a stale table from the baseline being replaced
    return dest


def find_baseline(run: Run, *, root: Path = DEFAULT_ROOT, name: str | None = None) -> tuple[str, Path | None]:
    """The baseline for a run: (its name, its folder, or None when there is none yet)."""
    name = check_name(name if name is not None else machine_class(run.env))
    dest = baseline_dir(root, name)
    return name, (dest if (dest / "cells.csv").is_file() else None)


def list_baselines(root: Path = DEFAULT_ROOT) -> list[tuple[str, Run | str]]:
    """Each baseline folder under ``root`` with its run, or the one-line reason it cannot be read."""
    from bench.results.merge import RunError, load_run

    found: list[tuple[str, Run | str]] = []
    if not Path(root).is_dir():
        return found
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        try:
            found.append((folder.name, load_run(folder)))
        except RunError as exc:
            found.append((folder.name, str(exc)))
    return found
