"""How genbench names the inputs of the ONNX graphs it exports, written and read in one place.

The exporter names positional inputs ``input_0, input_1, ...``. The exporter may drop
an input the graph does not use, so a reader maps names back to positions by their
number, not their order; ONNX files from elsewhere keep their own order.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"input_(\d+)")


def input_name(position: int) -> str:
    return f"input_{position}"


def output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def input_positions(names: list[str]) -> list[int]:
    """The positional model input feeding each graph input: by number for genbench's names, else in order."""
    numbers = [_NAME.fullmatch(name) for name in names]
    if names and all(numbers):
        return [int(m.group(1)) for m in numbers if m]
    return list(range(len(names)))
