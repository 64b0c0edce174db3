"""How a cell that raised ends: ``skipped``, ``oom`` or ``error``, with a one-line reason.

The mapping is one function so that every way of running a cell (in this process
today; in a worker process or on another machine later) turns the same exception
into the same row.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import torch

from bench.core.errors import NotApplicable
from bench.core.text import one_line
from bench.harness.result import CellOutcome

REASON_MAX_CHARS = 400
#: how allocators other than torch's CUDA one say they ran out: c10's CPU allocator (a plain
#: RuntimeError), ONNX Runtime's arena and CUDA provider (its own exception types).
_OOM_MESSAGES = ("can't allocate memory", "failed to allocate memory", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether a cell failed for want of memory (an `oom` row) rather than a bug (an `error` row)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return any(message in text for message in _OOM_MESSAGES)


def skipped(reason: str) -> CellOutcome:
    return CellOutcome("skipped", reason[:REASON_MAX_CHARS])


def outcome_of(exc: Exception) -> CellOutcome:
    """The row status of a cell that raised ``exc``."""
    if isinstance(exc, NotApplicable):  # worded like applies_to's reasons: no exception class in front
        return skipped(one_line(exc, REASON_MAX_CHARS, with_type=False))
    if is_out_of_memory(exc):
        return CellOutcome("oom", one_line(exc, REASON_MAX_CHARS))
    return CellOutcome("error", one_line(exc, REASON_MAX_CHARS), notes=where(exc))


def where(exc: BaseException) -> str:
    """The innermost frame of an error, so an `error` row points at the code that failed."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"at {Path(last.filename).name}:{last.lineno} in {last.name}"
