"""--find-peak against simulated servers whose capacity is known."""

from __future__ import annotations

import pytest

from bench.serving.load import LoadSpec, run_simulated_load
from bench.serving.peak import CEILING_QPS, find_peak, probe_duration
from bench.serving.server import BatchingPolicy


def _probe(policy: BatchingPolicy, service, slo_ms: float, seconds: float = 60.0):
    def probe(qps: float):
        spec = LoadSpec(qps, probe_duration(qps, seconds), 11, policy, slo_p99_ms=slo_ms)
        return run_simulated_load(spec, service).stats

    return probe


def test_the_peak_lands_within_10_percent_of_a_batching_server_s_capacity() -> None:
    """A batch of up to 32 takes 50 ms whatever its size: capacity 640 requests/s, latency < 150 ms below it."""
    result = find_peak(_probe(BatchingPolicy(32, 0.0), lambda n: 0.05, slo_ms=300.0), start_qps=100.0)
    assert result.bracketed
    assert result.peak_qps == pytest.approx(640.0, rel=0.10)
    assert len(result.probes) <= 10
    # every probe at or below the peak met the SLO, every one above it missed
    assert all(p.slo_met == (p.target_qps <= result.peak_qps) for p in result.probes)


def test_the_search_comes_down_from_a_start_far_above_capacity() -> None:
    result = find_peak(_probe(BatchingPolicy(32, 0.0), lambda n: 0.05, slo_ms=300.0), start_qps=5000.0)
    assert result.peak_qps == pytest.approx(640.0, rel=0.10)


def test_an_slo_no_load_can_meet_gives_zero() -> None:
    """A request takes 50 ms alone: a 10 ms p99 is out of reach at any rate."""
    result = find_peak(_probe(BatchingPolicy(1, 0.0), lambda n: 0.05, slo_ms=10.0), start_qps=10.0)
    assert result.peak_qps == 0.0 and not result.bracketed
    assert "no probed load met" in result.describe(10.0)


def test_a_server_faster_than_the_harness_stops_at_the_ceiling() -> None:
    result = find_peak(lambda qps: _Met(qps), start_qps=CEILING_QPS / 3)
    assert result.at_ceiling and result.peak_qps == CEILING_QPS
    assert "ceiling" in result.describe(1.0)


class _Met:
    def __init__(self, qps: float) -> None:
        self.target_qps = qps
        self.slo_met = True


def test_probe_duration_is_long_enough_for_p99_and_bounded() -> None:
    assert probe_duration(1000.0, 30.0) == 30.0
    assert probe_duration(2.0, 30.0) == 100.0  # 200 requests at 2/s
    assert probe_duration(0.5, 30.0) == 120.0  # capped at 4x --duration
    assert probe_duration(0.1, 30.0) == 200.0  # but never under 20 expected arrivals


def test_a_non_positive_start_is_refused() -> None:
    with pytest.raises(ValueError):
        find_peak(lambda q: _Met(q), start_qps=0.0)
