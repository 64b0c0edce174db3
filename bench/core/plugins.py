"""Loading third-party plugins: every entry point of a group, a broken one reported rather than fatal.

Passes (``genbench.passes``) and runtimes (``genbench.runtimes``) come in the same way;
each registry decides what to do with what loaded.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any


def load_group(group: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """(name, loaded object) of each entry point in ``group``, and one line per plugin that failed to import."""
    loaded: list[tuple[str, Any]] = []
    failures: list[str] = []
    for ep in metadata.entry_points(group=group):
        try:
            loaded.append((ep.name, ep.load()))
        except Exception as exc:  # a broken plugin must not break the harness
            failures.append(f"{ep.name}: {type(exc).__name__}: {exc}")
    return loaded, failures
