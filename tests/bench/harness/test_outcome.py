"""How a failed cell's exception becomes its row's status."""

from __future__ import annotations

import pytest
import torch

from bench.core.errors import NotApplicable
from bench.harness.outcome import is_out_of_memory, outcome_of


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (
            RuntimeError(
                "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"
            ),
            True,
        ),
        (RuntimeError("CUDA failure 2: out of memory ; GPU=0"), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("bad value"), False),
    ],
)
def test_out_of_memory_is_told_apart_from_other_errors(exc: Exception, expected: bool) -> None:
    assert is_out_of_memory(exc) is expected


def test_outcome_of_each_kind_of_failure() -> None:
    assert outcome_of(NotApplicable("nothing to quantize")).status == "skipped"
    assert outcome_of(NotApplicable("nothing to quantize")).reason == "nothing to quantize"
    assert outcome_of(torch.OutOfMemoryError("CUDA out of memory")).status == "oom"
    try:
        raise RuntimeError("first line\nsecond line")
    except RuntimeError as exc:
        error = outcome_of(exc)
    assert (error.status, error.reason) == ("error", "RuntimeError: first line")
    assert error.notes is not None and "test_outcome.py" in error.notes
