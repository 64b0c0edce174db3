"""What several commands share: the --device flag resolved to a usable device, and the console they print to."""

from __future__ import annotations

from typing import Any

from bench.core.errors import UsageError


def device_from_flag(text: str | None) -> Any:
    """``--device`` as a Device: the best present when not given; UsageError when it cannot be used here."""
    from bench.core.device import best_available, check_available, parse_device

    try:
        device = parse_device(text) if text else best_available()
        check_available(device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return device


def wide_console() -> Any:
    """The console of the commands that print wide tables: no 80-column wrapping in logs and CI."""
    from bench.render.console import make_console

    return make_console(min_width=160)
