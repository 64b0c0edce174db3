"""When requests arrive: a seeded Poisson process, as MLPerf's Server scenario and perf_analyzer's
``--request-distribution poisson`` issue them.

Inter-arrival gaps are independent exponentials of mean ``1 / rate``: the memoryless arrivals of
many independent users, bursts included (a constant-rate load hides the queueing that bursts cause).
The schedule is drawn up front from its own seeded generator, so the same seed offers the same load
to every pipeline it compares: their latencies differ by the server, not by the luck of the draw.
"""

from __future__ import annotations

import math

import numpy as np


def poisson_arrivals(rate_qps: float, duration_s: float, seed: int) -> np.ndarray:
    """Arrival times in ``[0, duration_s)`` seconds of a Poisson process at ``rate_qps`` requests/s, ascending."""
    if not 0 < rate_qps < math.inf:
        raise ValueError(f"the arrival rate must be a positive number of requests/s (got {rate_qps})")
    if not 0 < duration_s < math.inf:
        raise ValueError(f"the load's duration must be a positive number of seconds (got {duration_s})")
    rng = np.random.default_rng(seed)
    expected = rate_qps * duration_s
    chunk = int(expected + 6 * math.sqrt(expected) + 16)  # one draw almost always covers the window
    times = np.cumsum(rng.exponential(1.0 / rate_qps, size=chunk))
    while times[-1] < duration_s:
        more = np.cumsum(rng.exponential(1.0 / rate_qps, size=chunk)) + times[-1]
        times = np.concatenate([times, more])
    return times[times < duration_s]
