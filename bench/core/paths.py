"""Where genbench keeps files between runs: measured peaks and TensorRT engines."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$GENBENCH_CACHE_DIR, else $XDG_CACHE_HOME/genbench, else ~/.cache/genbench."""
    explicit = os.environ.get("GENBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genbench"
