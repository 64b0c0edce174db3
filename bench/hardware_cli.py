"""Sub-commands about hardware the user may not own (devices, project).

``register`` adds their parsers and returns name -> handler for bench.cli.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    return {}
