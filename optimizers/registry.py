"""One registry of passes, one decorator to fill it, one parser for pipeline strings.

A pass is a small class: it names the artifact kinds it consumes and produces,
says whether it applies on a device (or why not), and builds a new artifact.
The registry is a plain dict (torchao style); third parties add passes through
the ``genbench.passes`` entry-point group, loaded once on first use.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from bench.core.artifact import Artifact
from bench.core.errors import PipelineError

if TYPE_CHECKING:
    from bench.core.device import Device

ENTRY_POINT_GROUP = "genbench.passes"


@dataclass(frozen=True)
class PassContext:
    """What a pass may need beyond the artifact: where it runs and what data the model sees.

    ``calibration(n)`` yields n input tuples drawn with other seeds than the timed
    inputs (for quantization); ``example_inputs`` is
    one batch at the benchmarked batch size; ``workdir`` is where files (ONNX,
    engines) go; ``batch_sizes`` lists every batch size of the run so a build can
    cover all of them.
    """

    device: Device
    example_inputs: tuple[torch.Tensor, ...]
    calibration: Callable[[int], Iterator[tuple[torch.Tensor, ...]]]
    workdir: Path
    batch_sizes: tuple[int, ...]
    cache_key: str = ""


class Pass(ABC):
    """Base class of every optimization pass.

    Subclasses set ``name``, ``consumes`` (artifact kinds accepted) and
    ``produces`` (the kind returned, or None for "same as input"). ``arg`` is the
    text after the colon in the pipeline string (``prune:0.3`` -> "0.3"); a
    subclass validates it in ``__init__`` and raises PipelineError when it is bad.
    """

    name: ClassVar[str]
    consumes: ClassVar[tuple[str, ...]] = ("torch",)
    produces: ClassVar[str | None] = None
    summary: ClassVar[str] = ""
    #: True when the pass changes how much arithmetic a forward call does (pruning), so FLOPs are recounted
    changes_work: ClassVar[bool] = False
    #: kinds to convert to automatically when this pass meets another kind (e.g. int8 on torch -> onnx first)
    implicit_from: ClassVar[dict[str, str]] = {}

    def __init__(self, arg: str | None = None) -> None:
        if arg is not None:
            raise PipelineError(f"pass {self.name!r} takes no argument (got {arg!r})")
        self.arg = arg

    @property
    def spec(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    def output_kind(self, input_kind: str) -> str:
        return self.produces or input_kind

    def available(self) -> str | None:
        """None if the libraries this pass needs are installed, else why not (checked without importing them heavily)."""
        return None

    def applies_to(self, device: Device) -> str | None:
        """None if the pass can run on this device with what is installed, else the reason it cannot.

        Artifact kinds are checked when the pipeline is parsed, so this only looks at
        the device and the installed libraries.
        """
        return self.available()

    def default_exclusion(self, device: Device) -> str | None:
        """None if the pass belongs in the default matrix on this device, else why it is left out.

        For passes that run but cannot pay off (bf16 emulated on a CPU without bf16
        instructions): asked for explicitly they are measured; by default they are not.
        """
        return None

    @abstractmethod
    def apply(self, artifact: Artifact, ctx: PassContext) -> Artifact:
        """Return a new artifact; never mutate ``artifact``."""


PASSES: dict[str, type[Pass]] = {}
_entry_points_loaded = False


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: add a pass to the registry under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name or not re.fullmatch(r"[a-z][a-z0-9_\-]*", name):
        raise ValueError(f"pass class {cls.__name__} needs a lowercase `name` (got {name!r})")
    existing = PASSES.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"pass name {name!r} is already registered by {existing.__module__}.{existing.__name__}"
        )
    PASSES[name] = cls
    return cls


def load_entry_points() -> list[str]:
    """Import third-party passes declared under ``genbench.passes``; return the names that failed."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True
    failures: list[str] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break the harness
            failures.append(f"{ep.name}: {type(exc).__name__}: {exc}")
            continue
        if isinstance(obj, type) and issubclass(obj, Pass) and obj.name not in PASSES:
            register_pass(obj)
    return failures


def all_passes() -> dict[str, type[Pass]]:
    """The registry with built-in and entry-point passes loaded."""
    load_entry_points()
    return PASSES


@dataclass(frozen=True)
class Pipeline:
    """A parsed pipeline: the user's text and the passes in order (implicit conversions included)."""

    text: str
    passes: tuple[Pass, ...]

    @property
    def final_kind(self) -> str:
        kind = "torch"
        for p in self.passes:
            kind = p.output_kind(kind)
        return kind

    def __str__(self) -> str:
        return self.text


def parse_pipeline(text: str) -> Pipeline:
    """Parse ``"prune:0.3+onnx+int8"`` into passes, checking every step's input kind.

    A pass that needs another artifact kind is preceded by its declared implicit
    conversion (``int8`` on a torch model gets ``onnx`` first). Anything that
    cannot work raises PipelineError with a one-line reason.
    """
    registry = all_passes()
    text = text.strip()
    if not text:
        raise PipelineError("empty pipeline")
    passes: list[Pass] = []
    kind = "torch"
    for token in text.split("+"):
        token = token.strip()
        if not token:
            raise PipelineError(f"malformed pipeline {text!r}: empty step between '+'")
        name, _, arg = token.partition(":")
        cls = registry.get(name)
        if cls is None:
            raise PipelineError(
                f"unknown pass {name!r} in {text!r}; known passes: {', '.join(sorted(registry))}"
            )
        if ":" in token and not arg:
            raise PipelineError(f"malformed pipeline {text!r}: {name!r} has an empty argument after ':'")
        step = cls(arg) if ":" in token else cls()
        if kind not in cls.consumes:
            bridge = cls.implicit_from.get(kind)
            if bridge is None:
                made_by = passes[-1].spec if passes else "the model"
                raise PipelineError(
                    f"{token!r} needs a {' or '.join(cls.consumes)} artifact but {made_by} gives {kind}: "
                    f"put {name!r} earlier in {text!r}"
                )
            conversion = registry[bridge]()
            passes.append(conversion)
            kind = conversion.output_kind(kind)
        passes.append(step)
        kind = step.output_kind(kind)
    return Pipeline(text=text, passes=tuple(passes))
