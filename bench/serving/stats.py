"""One load's records summarized: what ``probes.csv`` and a server row say.

Percentiles are nearest-rank over the measured requests (those scheduled after the warm-up),
with a dropped request counted as infinitely late: a server that dropped 2% of its requests has
an infinite p99, not the p99 of the ones it chose to finish. ``achieved_qps`` is the measured
requests completed over the measured window, or over the time from the first of them finishing to
the last when that is longer: a server that kept up achieves the rate offered, one that fell
behind about its capacity.

``overloaded`` flags a load the server did not hold: it dropped requests, or it achieved less than
``KEPT_UP`` of the rate actually offered (the Poisson count in the window, not the target, so
the draw's own luck is not charged) and was still draining a backlog well after the last arrival
(beyond two full batches and 5% of the load). A load that is overloaded never meets an SLO.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from bench.core.columns import RowPart
from bench.serving.server import LoadWindow, RequestRecord

#: achieved / offered below this is a server that did not keep up
KEPT_UP = 0.9
NAN = math.nan


def nearest_rank(values: np.ndarray, pct: float) -> float:
    """The ``pct`` percentile by nearest rank (a value that occurred; inf when it falls on a dropped request)."""
    if len(values) == 0:
        return NAN
    ordered = np.sort(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class ProbeStats:
    """A load's summary: the columns of ``probes.csv`` after ``cell_id`` and ``probe``."""

    target_qps: float
    duration_s: float
    requests: int
    achieved_qps: float
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    queue_ms_p50: float
    queue_ms_p99: float
    mean_batch: float
    dropped: int
    overloaded: bool
    slo_met: bool | None
    goodput_qps: float
    ttft_ms_p50: float
    ttft_ms_p99: float
    tpot_ms_p50: float
    tpot_ms_p99: float

    def row(self) -> dict[str, object]:
        return asdict(self)


def summarize_load(
    records: list[RequestRecord],
    target_qps: float,
    window: LoadWindow,
    slo_p99_ms: float | None = None,
    new_tokens: int | None = None,
    slowest_batch_s: float = 0.0,
) -> ProbeStats:
    """The summary of one load's records (``new_tokens``: a generation's length, for TPOT;
    ``slowest_batch_s``: a full batch's service time, what a server that keeps up may take to drain)."""
    measured = [r for r in records if not r.warmup]
    done = [r for r in measured if r.completed]
    dropped = len(measured) - len(done)
    latency = np.array([(r.end_s - r.arrival_s) if r.completed else math.inf for r in measured]) * 1e3
    queue = np.array([(r.start_s - r.arrival_s) if r.completed else math.inf for r in measured]) * 1e3
    # over the window, or from the first measured completion to the last when that is longer (a backlog
    # drained late); not from the window's start, which would charge every request's own latency as lag
    ends = [r.end_s for r in done]
    span = max(window.duration_s, max(ends, default=0.0) - min(ends, default=0.0))
    achieved = len(done) / span
    offered = len(measured) / window.duration_s
    # fell behind: under KEPT_UP of the rate offered, and still draining a backlog well after the last
    # arrival (a server that keeps up finishes within about two of its batches; a few requests' own latency
    # at a low rate is not lag)
    last_arrival = max((r.arrival_s for r in measured), default=window.end_s)
    drain = max(ends, default=last_arrival) - last_arrival
    behind = achieved < KEPT_UP * offered and drain > 2 * slowest_batch_s + max(1.0, 0.05 * window.duration_s)
    overloaded = dropped > 0 or (offered > 0 and behind)
    p99 = nearest_rank(latency, 99)
    slo_met = None if slo_p99_ms is None else bool(not overloaded and p99 <= slo_p99_ms)
    # over the same span as achieved_qps, so goodput never exceeds it
    good = NAN if slo_p99_ms is None else float(np.sum(latency <= slo_p99_ms)) / span
    ttft = np.array([(r.first_token_s - r.arrival_s) * 1e3 for r in done if not math.isnan(r.first_token_s)])
    tpot = np.array(
        [
            (r.end_s - r.first_token_s) * 1e3 / (new_tokens - 1)
            for r in done
            if new_tokens and new_tokens > 1 and not math.isnan(r.first_token_s)
        ]
    )
    return ProbeStats(
        target_qps=float(target_qps),
        duration_s=window.duration_s,
        requests=len(measured),
        achieved_qps=float(achieved),
        latency_ms_p50=nearest_rank(latency, 50),
        latency_ms_p90=nearest_rank(latency, 90),
        latency_ms_p99=p99,
        queue_ms_p50=nearest_rank(queue, 50),
        queue_ms_p99=nearest_rank(queue, 99),
        mean_batch=float(np.mean([r.batch_size for r in done])) if done else NAN,
        dropped=dropped,
        overloaded=bool(overloaded),
        slo_met=slo_met,
        goodput_qps=good,
        ttft_ms_p50=nearest_rank(ttft, 50),
        ttft_ms_p99=nearest_rank(ttft, 99),
        tpot_ms_p50=nearest_rank(tpot, 50),
        tpot_ms_p99=nearest_rank(tpot, 99),
    )


@dataclass(frozen=True)
class ServingMetrics(RowPart):
    """A serving cell's columns beyond the latency ones (which hold its requests' latencies from
    scheduled arrival): the load it held, its queueing and batching, the SLO, the peak, the soak.

    ``best_batch_size`` is an offline run's answer (filled on every row of a model x pipeline
    once its batch sizes are measured); ``soak_verdicts`` one line of the soak's checks.
    """

    achieved_qps: float = NAN
    queue_ms_p50: float = NAN
    queue_ms_p99: float = NAN
    mean_batch: float = NAN
    dropped: int | None = None
    overloaded: bool | None = None
    slo_p99_ms: float | None = None
    slo_met: bool | None = None
    goodput_qps: float = NAN
    peak_qps: float = NAN
    probes: int | None = None
    load_s: float = NAN
    max_queue_delay_ms: float = NAN
    best_batch_size: int | None = None
    soak_s: float = NAN
    soak_verdicts: str | None = None

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "achieved_qps", "queue_ms_p50", "queue_ms_p99", "mean_batch", "dropped", "overloaded", "slo_p99_ms",
        "slo_met", "goodput_qps", "peak_qps", "probes", "load_s", "max_queue_delay_ms", "best_batch_size",
        "soak_s", "soak_verdicts",
    )  # fmt: skip

    @classmethod
    def of(
        cls, stats: ProbeStats, max_queue_delay_ms: float, slo_p99_ms: float | None, **more: object
    ) -> ServingMetrics:
        return cls(
            achieved_qps=stats.achieved_qps,
            queue_ms_p50=stats.queue_ms_p50,
            queue_ms_p99=stats.queue_ms_p99,
            mean_batch=stats.mean_batch,
            dropped=stats.dropped,
            overloaded=stats.overloaded,
            slo_p99_ms=slo_p99_ms,
            slo_met=stats.slo_met,
            goodput_qps=stats.goodput_qps,
            load_s=stats.duration_s,
            max_queue_delay_ms=max_queue_delay_ms,
            **more,  # type: ignore[arg-type]
        )
