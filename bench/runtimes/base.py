"""The runtime contract and its registry: which backend runs an artifact of each kind.

A runtime splits a forward call into what is timed and what is not:
``prepare`` places inputs (on the device, in the right dtype/format) once,
``run`` is the timed call, ``to_torch`` turns an output into an fp32 CPU tensor
for the fidelity check. Each backend imports its library inside itself.

Runtimes are plugins, the way passes are: a class decorated with
``@register_runtime("kind")`` runs artifacts whose ``kind`` is that string, and
a third-party package adds one through the ``genbench.runtimes`` entry-point
group (loaded once, on the first lookup). A pass that produces a new artifact
kind and the runtime for it can thus both come from outside genbench.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, Protocol

import torch

from bench.core.artifact import Artifact
from bench.core.device import Device
from bench.core.plugins import load_group

ENTRY_POINT_GROUP = "genbench.runtimes"


class LoadedModel(Protocol):
    #: what ran it, for the `runtime` column, e.g. "torch-eager" or "onnxruntime:CPUExecutionProvider"
    runtime_name: str
    #: whether its device memory is torch's (then torch's peak counters cover it) or its own
    allocates_through_torch: bool

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Any: ...

    def run(self, prepared: Any) -> Any: ...

    def to_torch(self, output: Any) -> torch.Tensor: ...


def runtime_notes(runtime: LoadedModel) -> tuple[str, ...]:
    """What a runtime says about how it configured itself (OpenVINO's streams and threads), for ``notes``.

    Optional: a runtime may set a ``notes`` tuple once it has prepared its first input; most have none.
    """
    return tuple(getattr(runtime, "notes", ()))


#: a runtime class: constructed with (artifact, device), it is a LoadedModel
RuntimeFactory = Callable[[Any, Device], LoadedModel]
RUNTIMES: dict[str, RuntimeFactory] = {}


def register_runtime(kind: str) -> Callable[[RuntimeFactory], RuntimeFactory]:
    """Class decorator: run artifacts of ``kind`` with the decorated class."""
    if not re.fullmatch(r"[a-z][a-z0-9_\-]*", kind):
        raise ValueError(f"artifact kind {kind!r} must be lowercase letters, digits, '-' or '_'")

    def add(cls: RuntimeFactory) -> RuntimeFactory:
        existing = RUNTIMES.get(kind)
        if existing is not None and existing is not cls:
            raise ValueError(f"artifact kind {kind!r} already runs on {existing!r}")
        RUNTIMES[kind] = cls
        return cls

    return add


@functools.cache
def load_entry_points() -> tuple[str, ...]:
    """Register third-party runtimes declared under ``genbench.runtimes`` (once); the ones that failed to load.

    An entry point's name is the artifact kind, its object the runtime class.
    """
    loaded, failures = load_group(ENTRY_POINT_GROUP)
    for kind, cls in loaded:
        if kind not in RUNTIMES:
            try:
                register_runtime(kind)(cls)
            except ValueError as exc:  # a malformed plugin must not stop the harness either
                failures.append(f"{kind}: {exc}")
    return tuple(failures)


def all_runtimes() -> dict[str, RuntimeFactory]:
    load_entry_points()
    return RUNTIMES


def load(artifact: Artifact, device: Device) -> LoadedModel:
    """The runtime registered for the artifact's kind, loaded with it."""
    runtimes = all_runtimes()
    factory = runtimes.get(artifact.kind)
    if factory is None:
        known = ", ".join(sorted(runtimes)) or "none"
        raise ValueError(f"no runtime is registered for artifact kind {artifact.kind!r} (known: {known})")
    return factory(artifact, device)


def runtime_unavailable(kind: str, device: Device) -> str | None:
    """Why no registered runtime can run an artifact of ``kind`` on ``device`` as configured by default.

    A runtime class may define ``unavailable(device) -> str | None`` (a missing library, a missing
    execution provider); the harness asks it before a cell is built, so such a cell is skipped.
    """
    factory = all_runtimes().get(kind)
    if factory is None:
        return f"no runtime is registered for {kind} artifacts"
    check = getattr(factory, "unavailable", None)
    if check is None:
        return None
    try:
        return check(device)
    except Exception as exc:  # a plugin's own check failing: the cell is skipped with that, the run goes on
        return f"the {kind} runtime could not tell whether it runs here: {type(exc).__name__}: {exc}"


def first_tensor(output: Any) -> torch.Tensor:
    """Models may return a tensor, a tuple/list, or a dict; the first tensor is the image."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"model output has no tensor (got {type(output).__name__})")
