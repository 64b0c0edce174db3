"""What a pass is, and the registry that finds passes by name (built-in and entry-point plugins).

A pass is a small class: it names the artifact kinds it consumes and produces,
declares which artifact states it refuses and which state it leaves (so a
pipeline is checked before any model is built), says whether it applies on a
device (or why not), and builds a new artifact. Its arguments are typed keyword
arguments (``Prune(ratio=0.3)``); ``from_arg`` turns the text after the colon of
a pipeline string into them, once. The registry is a plain dict (torchao style);
third parties add passes through the ``genbench.passes`` entry-point group,
loaded once on first use.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar

import torch

from bench.core.artifact import Artifact, OnnxArtifact, OpenVinoArtifact, TensorRTArtifact, TorchArtifact
from bench.core.errors import PipelineError
from bench.core.plugins import load_group
from bench.core.text import did_you_mean
from optimizers.state import ArtifactState

if TYPE_CHECKING:
    from bench.core.device import Device

ENTRY_POINT_GROUP = "genbench.passes"

A = TypeVar("A", TorchArtifact, OnnxArtifact, TensorRTArtifact, OpenVinoArtifact)
#: what ``prune`` and ``sparsity`` remove when no ratio is given
DEFAULT_RATIO = 0.5


@dataclass(frozen=True)
class PassContext:
    """What a pass may need beyond the artifact: where it runs and what data the model sees.

    ``calibration(n)`` yields n input tuples drawn with other seeds than the timed
    inputs (for quantization); ``example_inputs`` is
    one batch at the benchmarked batch size; ``workdir`` is where files (ONNX,
    engines) go; ``batch_sizes`` lists every batch size of the run so a build can
    cover all of them; ``scenario`` is the run's (single-stream, offline, server), for a
    runtime whose configuration depends on it (OpenVINO's latency or throughput hint).
    """

    device: Device
    example_inputs: tuple[torch.Tensor, ...]
    calibration: Callable[[int], Iterator[tuple[torch.Tensor, ...]]]
    workdir: Path
    batch_sizes: tuple[int, ...]
    cache_key: str = ""
    scenario: str = "single-stream"


class Pass(ABC):
    """Base class of every optimization pass.

    Subclasses set ``name``, ``consumes`` (artifact kinds accepted) and
    ``produces`` (the kind returned, or None for "same as input"). A pass with
    arguments takes them as keyword arguments, validates them in ``__init__``
    (PipelineError when bad), sets ``arg`` to their canonical text, and either
    names the keyword in ``argument`` (a one-word argument) or overrides
    ``from_arg``. Order rules go in ``refuses`` and ``after``; ``apply`` starts
    with ``self.require(artifact, TorchArtifact)`` (or the kind it takes), so the
    rules are written once and hold both at parse time and at run time.
    """

    name: ClassVar[str]
    consumes: ClassVar[tuple[str, ...]] = ("torch",)
    produces: ClassVar[str | None] = None
    summary: ClassVar[str] = ""
    #: True when the pass itself chooses how the runtime runs the artifact (``ort:cuda`` picks the execution
    #: provider): the harness then leaves the runtime's availability to the pass's ``applies_to``
    configures_runtime: ClassVar[bool] = False
    #: kinds to convert to automatically when this pass meets another kind (e.g. int8 on torch -> onnx first)
    implicit_from: ClassVar[dict[str, str]] = {}
    #: the canonical text after the colon (``0.3`` of ``prune:0.3``); None when no argument was given
    arg: str | None = None
    #: for a pass whose argument is one word (``compile:MODE``): the keyword of ``__init__`` it is passed as
    argument: ClassVar[str | None] = None

    def __init__(self, arg: str | None = None) -> None:
        # ``arg`` stays for plugins written when every pass was built from its text: they call
        # ``super().__init__()`` or define ``__init__(self, arg=None)`` themselves.
        if arg is not None:
            raise PipelineError(f"pass {self.name!r} takes no argument (got {arg!r})")

    @classmethod
    def from_arg(cls, arg: str | None) -> Self:
        """The pass for the text after the colon of a pipeline step (None: the step had no colon).

        The text is parsed here, once, into the keyword arguments Python users give the
        constructor: a one-word argument goes to the keyword named by ``argument`` (checked
        by ``__init__``); a pass with more to parse overrides this. Otherwise the text is
        passed on as it is, which is what a plugin's ``__init__(self, arg=None)`` expects.
        """
        if arg is None:
            return cls()
        return cls(**{cls.argument: arg}) if cls.argument is not None else cls(arg)

    @property
    def spec(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    def __repr__(self) -> str:
        return f"<pass {self.spec}>"

    def output_kind(self, input_kind: str) -> str:
        return self.produces or input_kind

    def refuses(self, state: ArtifactState) -> str | None:
        """None if the pass can take an artifact in ``state``, else one line saying why and how to reorder.

        Asked for every step when a pipeline is parsed, before any model is built, and
        by ``require`` on the real artifact at run time. The base checks the kind; a
        subclass checks its own rules first and ends with ``return super().refuses(state)``.
        """
        if state.kind not in self.consumes:
            return f"{self.name} needs a {' or '.join(self.consumes)} artifact, not {state.kind}"
        return None

    def after(self, state: ArtifactState) -> ArtifactState:
        """The state of what ``apply`` returns for an input in ``state`` (which ``refuses`` accepted).

        The base: the kind ``output_kind`` gives; an artifact of a new kind keeps only the precision.
        """
        kind = self.output_kind(state.kind)
        return state if kind == state.kind else ArtifactState(kind=kind, precision=state.precision)

    def require(self, artifact: Artifact, expected: type[A]) -> A:
        """``artifact`` if this pass takes it, else the PipelineError ``refuses`` gives for its state.

        So a pass applied by hand, outside a parsed pipeline, is refused as the parser would.
        """
        reason = self.refuses(ArtifactState.of(artifact))
        if reason is None and not isinstance(artifact, expected):
            reason = f"{self.name} needs a {expected.__name__}, got a {type(artifact).__name__}"
        if reason is not None:
            raise PipelineError(reason)
        return artifact

    def available(self) -> str | None:
        """None if the libraries this pass needs are installed, else why not (checked without importing them heavily)."""
        return None

    def applies_to(self, device: Device) -> str | None:
        """None if the pass can run on this device with what is installed, else the reason it cannot.

        Artifact states are checked when the pipeline is parsed, so this only looks at
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


def check_choice(pass_name: str, what: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a PipelineError naming them and the closest one."""
    if value not in choices:
        raise PipelineError(
            f"{pass_name} {what} {value!r} unknown; choose from {', '.join(choices)}{did_you_mean(value, choices)}"
        )
    return value


def compiled_refusal(pass_name: str) -> str:
    """The reason every pass that rewrites the torch module gives for a compiled one."""
    return (
        f"{pass_name} cannot change a module that is already compiled (by compile, cudagraph or pt2e-int8): "
        f"put {pass_name} before them"
    )


class RatioPass(Pass):
    """A pass whose one optional argument is the share of weights it removes, in (0, 1) (default 0.5)."""

    def __init__(self, *, ratio: float | None = None) -> None:
        if ratio is not None and (
            isinstance(ratio, bool)
            or not isinstance(ratio, int | float)
            or not math.isfinite(ratio)
            or not 0.0 < ratio < 1.0
        ):
            raise PipelineError(f"{self.name} ratio must be in (0, 1), e.g. {self.name}:0.3 (got {ratio!r})")
        self.ratio: float = DEFAULT_RATIO if ratio is None else float(ratio)
        self.arg = None if ratio is None else repr(self.ratio)

    @classmethod
    def from_arg(cls, arg: str | None) -> Self:
        if arg is None:
            return cls()
        try:
            ratio = float(arg)
        except ValueError:
            raise PipelineError(
                f"{cls.name} ratio must be a number in (0, 1), e.g. {cls.name}:0.3 (got {arg!r})"
            ) from None
        return cls(ratio=ratio)


PASSES: dict[str, type[Pass]] = {}
#: one line per ``genbench.passes`` plugin that could not be loaded or registered: `bench list` shows them
PLUGIN_FAILURES: list[str] = []
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
    loaded, failures = load_group(ENTRY_POINT_GROUP)
    for name, obj in loaded:
        if not (isinstance(obj, type) and issubclass(obj, Pass)):
            failures.append(f"{name}: {obj!r} is not a Pass subclass")
        elif obj.name not in PASSES:
            try:
                register_pass(obj)
            except ValueError as exc:
                failures.append(f"{name}: {exc}")
    PLUGIN_FAILURES.extend(failures)
    return failures


def all_passes() -> dict[str, type[Pass]]:
    """The registry with built-in and entry-point passes loaded."""
    load_entry_points()
    return PASSES
