"""Small text helpers shared across the harness: one-line errors, file-name slugs, the cache folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException, limit: int = 400, with_type: bool = True) -> str:
    """``Type: first line of the message``, without terminal colour codes (torch.onnx adds them).

    A cell's `reason` and every CLI error are one line: tables stay tidy and logs greppable.
    ``with_type=False`` leaves the exception's class out, for messages that are reasons
    rather than failures (a pass that does not apply).
    """
    message = f"{type(exc).__name__}: {exc}" if with_type else str(exc)
    text = _ANSI.sub("", message).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def slug(text: str) -> str:
    """A lowercase file-name-safe form of a device or class name: "AMD EPYC" -> "amd-epyc"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def cache_dir() -> Path:
    """Where measured peaks and TensorRT engines are kept: $GENBENCH_CACHE_DIR, else the user's cache dir."""
    explicit = os.environ.get("GENBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genbench"
