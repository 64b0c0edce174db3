"""Small text helpers shared by every layer: one-line errors, file-name slugs, "did you mean"."""

from __future__ import annotations

import difflib
import re

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


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean X?"`` for the closest of ``choices`` to a misspelt ``word``, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
