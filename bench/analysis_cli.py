"""Sub-commands that read finished runs (compare, report, merge, baseline).

``register`` adds their parsers and returns name -> handler for bench.cli.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    return {}
