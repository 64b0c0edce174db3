"""What the server has completed so far, as the monitor, the Prometheus exporter and the live panel read it.

The serving thread calls ``completed`` once per finished request and ``dropped`` for each
request it gives up on; the monitor thread reads windows and drains what is new once a
second. One lock guards both sides: a request record is three floats, so holding it is
far shorter than a model call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

#: completions kept for windowed percentiles: enough for a 10 s window at 10,000 requests/s
MAX_KEPT = 100_000


@dataclass(frozen=True)
class Completion:
    """One finished request: when it finished, its latency from scheduled arrival, its time queued, its batch."""

    done_at_s: float
    latency_s: float
    queue_s: float
    batch_size: int


@dataclass(frozen=True)
class Window:
    """Completions in the last ``seconds``: their rate and latency percentiles (NaN when there were none)."""

    seconds: float
    completed: int
    qps: float
    latency_ms_p50: float
    latency_ms_p99: float
    mean_batch: float


class LiveCounters:
    """Thread-safe running record of a serving run; times are the server clock's seconds.

    The recent completions live in a ring of fixed arrays, allocated and written through at
    creation, so a soak's RSS does not grow with its request count (see
    ``bench.serving.server.RequestLog``).
    """

    def __init__(self, kept: int = MAX_KEPT) -> None:
        self._lock = threading.Lock()
        self._ring = np.full((kept, 4), np.nan)  # done at, latency, queue, batch size
        self._next = 0  # completions ever recorded: the ring's write position is this mod its size
        self._new: list[Completion] = []
        self.completed_total = 0
        self.dropped_total = 0

    def completed(self, done_at_s: float, latency_s: float, queue_s: float, batch_size: int) -> None:
        with self._lock:
            self._ring[self._next % len(self._ring)] = (done_at_s, latency_s, queue_s, batch_size)
            self._next += 1
            self._new.append(Completion(done_at_s, latency_s, queue_s, batch_size))
            self.completed_total += 1

    def dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped_total += count

    def drain_new(self) -> list[Completion]:
        """The completions since the last call (the Prometheus histograms observe each once)."""
        with self._lock:
            new, self._new = self._new, []
        return new

    def window(self, now_s: float, seconds: float) -> Window:
        """Rate and percentiles of the completions in ``(now_s - seconds, now_s]``."""
        with self._lock:
            done = self._ring[:, 0]
            inside = self._ring[(done > now_s - seconds) & (done <= now_s)]
        if len(inside) == 0:
            nan = float("nan")
            return Window(seconds, 0, 0.0, nan, nan, nan)
        latencies = inside[:, 1] * 1e3
        return Window(
            seconds=seconds,
            completed=len(inside),
            qps=len(inside) / seconds,
            latency_ms_p50=float(np.percentile(latencies, 50)),
            latency_ms_p99=float(np.percentile(latencies, 99)),
            mean_batch=float(np.mean(inside[:, 3])),
        )
