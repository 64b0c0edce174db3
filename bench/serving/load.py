"""One load, start to end: a Poisson schedule offered to the server, real (threads) or simulated.

``run_threaded_load`` is what a server cell measures: the load generator's thread and the serving
loop (on the calling thread) run beside each other on ``perf_counter``. ``run_simulated_load`` runs the same ``serve`` loop on
a virtual clock against a model given by its service time per batch size: instant and
deterministic, for the tests and for checking the peak search on a server of known capacity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.serving.arrivals import poisson_arrivals
from bench.serving.clock import RealClock, SimulatedSource, ThreadedSource, VirtualClock
from bench.serving.live import LiveCounters
from bench.serving.server import BatchingPolicy, LoadWindow, RequestRecord, grace_of, serve, warmup_of
from bench.serving.stats import ProbeStats, summarize_load


@dataclass(frozen=True)
class LoadSpec:
    """A load to offer: its rate, how long it is measured, the schedule's seed, the batching and the SLO."""

    target_qps: float
    duration_s: float
    seed: int
    policy: BatchingPolicy
    slo_p99_ms: float | None = None
    new_tokens: int | None = None  # a generation's length (TPOT); None for other workloads
    slowest_batch_s: float = 0.0  # a full batch's service time, as primed: sets the grace period
    warmup_s: float | None = None  # None: warmup_of(duration_s)

    def window(self) -> LoadWindow:
        warmup = warmup_of(self.duration_s) if self.warmup_s is None else self.warmup_s
        return LoadWindow(warmup, self.duration_s, grace_of(self.duration_s, self.slowest_batch_s))


@dataclass(frozen=True)
class LoadResult:
    spec: LoadSpec
    window: LoadWindow
    records: list[RequestRecord]
    stats: ProbeStats


def result_of(spec: LoadSpec, window: LoadWindow, records: list[RequestRecord]) -> LoadResult:
    stats = summarize_load(
        records, spec.target_qps, window, spec.slo_p99_ms, spec.new_tokens, spec.slowest_batch_s
    )
    return LoadResult(spec, window, records, stats)


def run_threaded_load(
    spec: LoadSpec,
    serve_batch: Callable[[int], float],
    counters: LiveCounters | None = None,
    clock: RealClock | None = None,
) -> LoadResult:
    """Offer ``spec``'s load in real time; ``serve_batch(n)`` serves n items and returns the
    ``perf_counter`` time of its first token (NaN when the workload has none). ``clock``: the
    serving clock a monitor reads too (default: one started now)."""
    window = spec.window()
    arrivals = poisson_arrivals(spec.target_qps, window.end_s, spec.seed)
    clock = clock or RealClock()
    source = ThreadedSource(arrivals, clock)

    def on_clock(n: int) -> float:
        return serve_batch(n) - clock.start  # NaN stays NaN

    # The serving loop runs on the calling thread, the load generator on its own. Measured on the 2-core
    # Xeon (unet small fp32, batch 1): torch's CPU kernels called from a second Python thread took 50-53 ms
    # where the main thread took 26-27 ms (OpenMP's thread team of a new thread), so a serving thread of
    # our own would charge the model for the harness's threading.
    source.start()
    try:
        records = serve(source, on_clock, clock, spec.policy, window, counters)
    finally:
        source.close()
    return result_of(spec, window, records)


def run_simulated_load(spec: LoadSpec, service_s: Callable[[int], float]) -> LoadResult:
    """The same load and loop on a virtual clock, against a model that takes ``service_s(n)`` per batch of n."""
    window = spec.window()
    clock = VirtualClock()
    source = SimulatedSource(poisson_arrivals(spec.target_qps, window.end_s, spec.seed), clock)

    def simulated(n: int) -> float:
        clock.advance(service_s(n))
        return float("nan")

    return result_of(spec, window, serve(source, simulated, clock, spec.policy, window))
