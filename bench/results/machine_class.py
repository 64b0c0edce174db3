"""Which class of machine a run's numbers belong to, and the names and defaults of baselines.

Stdlib only: the command line reads the defaults here to build its --help without
importing pandas.

A class, not a host name: CI runners get a fresh host name every night, but the same
class of machine should give the same numbers, and a baseline from another class
would report the hardware difference as a regression. The class is the CPU model and
torch thread count, or the GPU model: ``cpu-amd-epyc-7763-64-core-processor-4t``,
``cuda-nvidia-h100-80gb-hbm3``.

The nightly check uses a wider threshold than ``compare`` does by default
(NIGHTLY_THRESHOLD): the bootstrap interval covers the noise within one run, not
the drift between two runs on different days (DESIGN.md records up to +-20% run
to run on a shared machine), and a nightly that cries wolf gets ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.core.errors import RunError
from bench.core.text import slug

DEFAULT_ROOT = Path("results") / "baselines"
NIGHTLY_THRESHOLD = 0.25
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def machine_class(env: dict[str, Any]) -> str:
    """The class of machine a run's numbers belong to (module docstring); RunError when it cannot be told."""
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
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise RunError(f"baseline name {name!r} must be letters, digits, '.', '_' or '-'")
    return name
