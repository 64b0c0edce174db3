"""The dynamically batching server: requests queue, and are served in batches by one serving loop.

Batching follows Triton's dynamic batcher: a batch starts with the oldest queued request and
takes whatever else is queued, up to ``max_batch``; when fewer are queued it waits for more until
the oldest has waited ``max_queue_delay_s`` (0: never wait, serve what is there). Every request
is one item (one image, one prompt) and is charged from its **scheduled** arrival (MLPerf's
Server rule): a server that falls behind pays for the backlog it builds, even when the load
generator itself was late in issuing.

The load runs for ``warmup_s + duration_s``; requests arriving in the warm-up are served but
not counted. After the last arrival the server drains its queue until ``grace_s`` past the end
of the load; what is not finished by then is ``dropped`` (never served, or finished too late),
so an overloaded server ends on time instead of hanging on its backlog.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.serving.clock import Clock, Request, RequestSource
from bench.serving.live import LiveCounters

NAN = math.nan


@dataclass(frozen=True)
class BatchingPolicy:
    """Triton's two dynamic-batching knobs."""

    max_batch: int
    max_queue_delay_s: float

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"--max-batch must be at least 1 (got {self.max_batch})")
        if not 0 <= self.max_queue_delay_s < math.inf:
            raise ValueError(f"--max-queue-delay-ms must be >= 0 (got {self.max_queue_delay_s * 1e3})")


@dataclass(frozen=True)
class LoadWindow:
    """How long the load runs and what of it counts."""

    warmup_s: float
    duration_s: float
    grace_s: float

    @property
    def end_s(self) -> float:
        """When the last request may arrive."""
        return self.warmup_s + self.duration_s

    @property
    def hard_stop_s(self) -> float:
        """When the server stops: requests not finished by now are dropped."""
        return self.end_s + self.grace_s


@dataclass
class RequestRecord:
    """One request's life (server-clock seconds): scheduled arrival, issue, batch start and end, first token."""

    request_id: int
    arrival_s: float
    issued_s: float
    start_s: float = NAN
    end_s: float = NAN
    first_token_s: float = NAN
    batch_id: int = -1
    batch_size: int = 0
    warmup: bool = False

    @property
    def completed(self) -> bool:
        return not math.isnan(self.end_s)


#: serves a batch of ``n`` items; returns the server-clock time of its first token (NaN: not a generation)
ServeBatch = Callable[[int], float]


class RequestLog:
    """Every request's times in arrays allocated, and written through, before the load starts.

    A soak's leak check reads the process's RSS: a record object per request (about 0.3 KB each)
    made the harness's own bookkeeping grow with the load. Measured on unet small int8 at 30
    requests/s for 10 minutes on the 2-core Xeon: +10.7 MB, which the check called a 68.7 MB/h
    leak. Arrays of known size, filled at creation (Linux commits pages when first written), keep
    the RSS flat; a closed loop, whose request count is only estimated, doubles them when full.
    """

    def __init__(self, capacity: int) -> None:
        self.size = 0
        capacity = max(1, capacity)
        self.times = np.full((capacity, 5), NAN)  # arrival, issued, start, end, first token
        self.batch = np.full((capacity, 2), -1, dtype=np.int64)  # batch id, batch size
        self.seen = np.zeros(capacity, dtype=bool)

    def _grow(self, needed: int) -> None:
        capacity = max(2 * len(self.times), needed)
        times, batch, seen = self.times, self.batch, self.seen
        self.times = np.full((capacity, 5), NAN)
        self.batch = np.full((capacity, 2), -1, dtype=np.int64)
        self.seen = np.zeros(capacity, dtype=bool)
        self.times[: len(times)], self.batch[: len(batch)], self.seen[: len(seen)] = times, batch, seen

    def put(
        self, request: Request, start: float, end: float, first_token: float, batch_id: int, size: int
    ) -> None:
        i = request.request_id
        if i >= len(self.times):
            self._grow(i + 1)
        self.times[i] = (request.arrival_s, request.issued_s, start, end, first_token)
        self.batch[i] = (batch_id, size)
        self.seen[i] = True
        self.size = max(self.size, i + 1)

    def records(self, warmup_s: float) -> list[RequestRecord]:
        """The requests as records, in id order (built after the load, when memory no longer matters)."""
        out = []
        for i in np.flatnonzero(self.seen[: self.size]):
            arrival, issued, start, end, first = (float(x) for x in self.times[i])
            batch_id, size = (int(x) for x in self.batch[i])
            out.append(RequestRecord(int(i), arrival, issued, start, end, first, batch_id, max(size, 0),
                                     warmup=arrival < warmup_s))  # fmt: skip
        return out


def serve(
    source: RequestSource,
    serve_batch: ServeBatch,
    clock: Clock,
    policy: BatchingPolicy,
    window: LoadWindow,
    counters: LiveCounters | None = None,
) -> list[RequestRecord]:
    """Run the serving loop until the load is drained or the hard stop; every scheduled request's record.

    ``counters`` (the monitor's and the Prometheus exporter's view) hears of each completion as it
    happens, in server-clock seconds.
    """
    log = RequestLog(source.capacity())
    batch_id = 0
    while clock.now() < window.hard_stop_s:
        first = source.get(window.hard_stop_s)
        if first is None:
            break  # the load is over and the queue is empty, or the hard stop came
        batch = [first]
        # Triton counts the delay from the oldest request's entry into the queue
        window_end = min(first.issued_s + policy.max_queue_delay_s, window.hard_stop_s)
        while len(batch) < policy.max_batch:
            more = source.get(window_end)
            if more is None:
                break
            batch.append(more)
        start = clock.now()
        first_token = serve_batch(len(batch))
        end = clock.now()
        late = end > window.hard_stop_s  # finished after the grace period: counted as dropped
        for request in batch:
            log.put(request, start, NAN if late else end, first_token, batch_id, len(batch))
            if counters is not None:
                if late:
                    counters.dropped()
                else:
                    counters.completed(end, end - request.arrival_s, start - request.arrival_s, len(batch))
        batch_id += 1
    for request in source.pending():
        log.put(request, NAN, NAN, NAN, -1, -1)
        if counters is not None:
            counters.dropped()
    return log.records(window.warmup_s)


def warmup_of(duration_s: float) -> float:
    """The warm-up excluded before a load's measured window: 10% of it, from 1 to 10 seconds.

    Long enough for the queue to reach its steady state at a sustainable load (many service
    times), short enough not to double a short probe.
    """
    return min(10.0, max(1.0, 0.1 * duration_s))


def grace_of(duration_s: float, slowest_batch_s: float) -> float:
    """How long past the load's end the server may drain: a quarter of the load, at least 2 s and
    at least two of its slowest batches (so a server that kept up always finishes its last batch)."""
    return max(2.0, 0.25 * duration_s, 2 * slowest_batch_s)
