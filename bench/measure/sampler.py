"""A background thread that takes a reading at the start, every interval, and at the end of a region.

Peak host memory and GPU power are both read this way during a cell: one
mechanism, so both have the same start/stop semantics (a reading at each edge,
the thread always joined, even when the region raises).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self


class PeriodicSampler:
    """Context manager calling ``self.sample()`` on entry, every ``interval_s`` on a thread, and on exit."""

    def __init__(self, interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name)

    def sample(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> Self:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
