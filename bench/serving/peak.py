"""``--find-peak``: the highest offered rate whose p99 latency (from scheduled arrival) meets the SLO.

Bracketing, then bisection, as perf_analyzer's and MLPerf's searches do: from a first guess
(the capacity the server's priming calls imply, halved), the rate doubles while probes meet the
SLO and halves while they do not, until one rate that meets it and one that does not bracket
the peak; then the bracket is bisected until it is narrower than ``tolerance`` of its lower end
(or the probe budget is spent). The peak is the highest rate that met the SLO.

Each probe must be long enough for its p99 to mean something: it runs for ``--duration``
seconds and at least as long as ``MIN_PROBE_REQUESTS`` arrivals take at that rate (p99 then
rests on at least 2 requests beyond it), capped at ``MAX_PROBE_FACTOR`` x ``--duration`` so a
very low rate cannot stall the search. A probe that is overloaded (dropped requests, or fell
behind the offered rate) fails whatever its p99, so a backlog that had not yet shown in the
percentile still counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bench.serving.stats import ProbeStats

MIN_PROBE_REQUESTS = 200
DEFAULT_MAX_PROBES = 10
#: a probe is never shorter than this many expected arrivals, whatever the cap: a slow model's probe at a
#: low rate measured a handful of requests, and a p99 of none failed it
MIN_CONCLUSIVE_REQUESTS = 20
MAX_PROBE_FACTOR = 4.0
#: the search gives up below this fraction of its first guess: no load meets the SLO
FLOOR_FRACTION = 1 / 64
#: the search probes no higher: about what one Python load generator and serving thread sustain with a
#: no-op model (20,000 requests/s at a p50 of 3 ms, measured on a 2-core Xeon); a peak here is the
#: harness's, and the result says so
CEILING_QPS = 20_000.0


def probe_duration(qps: float, duration_s: float) -> float:
    """Seconds a probe at ``qps`` is measured for (see the module's docstring)."""
    cap = max(MAX_PROBE_FACTOR * duration_s, MIN_CONCLUSIVE_REQUESTS / qps)
    return min(max(duration_s, MIN_PROBE_REQUESTS / qps), cap)


@dataclass(frozen=True)
class PeakResult:
    peak_qps: float  # 0 when no probed rate met the SLO
    probes: list[ProbeStats]
    bracketed: bool  # a met and a failed rate were both found (else the peak is a bound)
    at_ceiling: bool = False  # the search met the SLO at the harness's ceiling: the peak is at least that

    def describe(self, slo_p99_ms: float) -> str:
        if self.peak_qps == 0:
            return f"no probed load met p99 <= {slo_p99_ms:g} ms (lowest probed {min(p.target_qps for p in self.probes):.3g} qps)"
        bound = "" if self.bracketed else " (not bracketed: the probe budget ended first, a lower bound)"
        if self.at_ceiling:
            bound = (
                " (met at the load generator's ceiling: the model may hold more than the harness can offer)"
            )
        return (
            f"peak {self.peak_qps:.3g} qps at p99 <= {slo_p99_ms:g} ms after {len(self.probes)} probes{bound}"
        )


def find_peak(
    probe: Callable[[float], ProbeStats],
    start_qps: float,
    *,
    max_probes: int = DEFAULT_MAX_PROBES,
    tolerance: float = 0.05,
    ceiling: float = CEILING_QPS,
) -> PeakResult:
    """Search the peak with ``probe(qps)`` (each probe's ``slo_met`` decides), from ``start_qps``."""
    if not 0 < start_qps < math.inf:
        raise ValueError(f"the search needs a positive first rate (got {start_qps})")
    probes: list[ProbeStats] = []
    met: float | None = None
    failed: float | None = None

    def run(qps: float) -> bool:
        stats = probe(qps)
        probes.append(stats)
        return bool(stats.slo_met)

    qps = min(start_qps, ceiling)
    floor = qps * FLOOR_FRACTION
    while (met is None or failed is None) and len(probes) < max_probes:
        if run(qps):
            met = qps if met is None else max(met, qps)
            if qps >= ceiling:
                return PeakResult(met, probes, bracketed=False, at_ceiling=True)
            qps = min(2 * qps, ceiling)
        else:
            failed = qps if failed is None else min(failed, qps)
            if met is None and qps / 2 < floor:
                return PeakResult(0.0, probes, bracketed=False)
            qps /= 2
    if met is None or failed is None:
        return PeakResult(met or 0.0, probes, bracketed=False)
    while failed / met - 1 > tolerance and len(probes) < max_probes:
        middle = (met + failed) / 2
        if run(middle):
            met = middle
        else:
            failed = middle
    return PeakResult(met, probes, bracketed=True)
