"""Pipelines: passes in order, checked from the fp32 torch model before any model is built.

``parse_pipeline("prune:0.3+int8")`` and ``Pipeline.of(Prune(ratio=0.3), Int8())``
build the same pipeline: each step's ``refuses`` is asked about the state the
steps before it leave (``after``), a pass that needs another artifact kind gets
its declared conversion inserted (``int8`` on a torch model gets ``onnx``
first), and an impossible order raises PipelineError with the reason, which the
CLI turns into exit code 2 before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.core.errors import PipelineError
from bench.core.text import did_you_mean
from optimizers.base import PLUGIN_FAILURES, Pass, all_passes
from optimizers.state import ArtifactState


@dataclass(frozen=True)
class Pipeline:
    """A checked pipeline: its text and the passes in order (implicit conversions included)."""

    text: str
    passes: tuple[Pass, ...]

    @classmethod
    def of(cls, *passes: Pass) -> Pipeline:
        """The pipeline of these passes, checked and completed as ``parse_pipeline`` does its text.

        ``Pipeline.of(Prune(ratio=0.5), Int8())`` has the passes prune, onnx, int8 and the text
        ``prune:0.5+int8`` (each pass's ``spec``, the conversions left implicit).
        """
        return _checked("+".join(p.spec for p in passes), passes)

    @property
    def states(self) -> tuple[ArtifactState, ...]:
        """The state after each pass, starting from the fp32 torch model."""
        state, states = ArtifactState(), []
        for p in self.passes:
            state = p.after(state)
            states.append(state)
        return tuple(states)

    @property
    def final_state(self) -> ArtifactState:
        return self.states[-1] if self.passes else ArtifactState()

    @property
    def final_kind(self) -> str:
        return self.final_state.kind

    def __str__(self) -> str:
        return self.text


def parse_pipeline(text: str) -> Pipeline:
    """Parse ``"prune:0.3+onnx+int8"`` into passes and check their order (see the module docstring).

    Every problem (unknown pass, bad argument, impossible order) raises PipelineError
    with a one-line reason.
    """
    registry = all_passes()
    text = text.strip()
    passes: list[Pass] = []
    for token in text.split("+") if text else ():
        token = token.strip()
        if not token:
            raise PipelineError(f"malformed pipeline {text!r}: empty step between '+'")
        name, colon, arg = token.partition(":")
        cls = registry.get(name)
        if cls is None:
            broken = (
                f" (plugins that failed to load: {'; '.join(PLUGIN_FAILURES)})" if PLUGIN_FAILURES else ""
            )
            raise PipelineError(
                f"unknown pass {name!r} in {text!r}; known passes: {', '.join(sorted(registry))}"
                + did_you_mean(name, sorted(registry))
                + broken
            )
        if colon and not arg:
            raise PipelineError(f"malformed pipeline {text!r}: {name!r} has an empty argument after ':'")
        passes.append(cls.from_arg(arg if colon else None))
    return _checked(text, passes)


def _checked(text: str, passes: Iterable[Pass]) -> Pipeline:
    """Walk the states from the fp32 torch model, inserting conversions; PipelineError at the first refusal."""
    steps: list[Pass] = []
    state = ArtifactState()
    for step in passes:
        if state.kind not in step.consumes:
            conversion = _conversion(step, state, text, steps[-1].spec if steps else "the model")
            state = _advance(
                conversion,
                state,
                f"{text!r} cannot run: {step.name} converts to {conversion.name} first, and ",
            )
            steps.append(conversion)
        state = _advance(step, state, f"{text!r} cannot run: ")
        steps.append(step)
    if not steps:
        raise PipelineError("empty pipeline")
    return Pipeline(text=text, passes=tuple(steps))


def _conversion(step: Pass, state: ArtifactState, text: str, made_by: str) -> Pass:
    """The pass ``step`` declares for an artifact of ``state.kind`` (``implicit_from``), or why there is none."""
    bridge = step.implicit_from.get(state.kind)
    cls = all_passes().get(bridge) if bridge is not None else None
    if cls is None:
        raise PipelineError(
            f"{step.spec!r} needs a {' or '.join(step.consumes)} artifact but {made_by} gives {state.kind}: "
            f"put {step.name!r} earlier in {text!r}"
        )
    return cls()


def _advance(step: Pass, state: ArtifactState, context: str) -> ArtifactState:
    reason = step.refuses(state)
    if reason is not None:
        raise PipelineError(context + reason)
    return step.after(state)
