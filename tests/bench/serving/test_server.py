"""The serving loop on a virtual clock: latency from scheduled arrival, dynamic batching, drops, the hard stop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.serving.clock import SimulatedSource, VirtualClock
from bench.serving.live import LiveCounters
from bench.serving.load import LoadSpec, run_simulated_load, run_threaded_load
from bench.serving.server import BatchingPolicy, LoadWindow, serve
from bench.serving.stats import nearest_rank, summarize_load


def _serve(arrivals: list[float], service_s: float, policy: BatchingPolicy, window: LoadWindow):
    clock = VirtualClock()
    source = SimulatedSource(np.array(arrivals), clock)

    def model(n: int) -> float:
        clock.advance(service_s)
        return math.nan

    return serve(source, model, clock, policy, window)


def test_a_slow_server_charges_the_queue_from_scheduled_arrival() -> None:
    """Arrivals every 10 ms, a server that takes 50 ms a request: the n-th request waits ~40 ms x n."""
    arrivals = [0.01 * i for i in range(20)]
    records = _serve(arrivals, 0.05, BatchingPolicy(1, 0.0), LoadWindow(0.0, 0.2, 10.0))
    latencies = [r.end_s - r.arrival_s for r in records]
    # request i starts when i earlier ones are done: end = 0.05 (i + 1), arrival = 0.01 i
    for i, latency in enumerate(latencies):
        assert latency == pytest.approx(0.05 * (i + 1) - 0.01 * i)
    assert latencies[-1] > 10 * latencies[0]  # queueing shows
    queue = [r.start_s - r.arrival_s for r in records]
    assert queue[0] == 0 and queue[-1] == pytest.approx(0.05 * 19 - 0.01 * 19)


def test_a_server_that_keeps_up_has_no_queue() -> None:
    arrivals = [0.1 * i for i in range(10)]
    records = _serve(arrivals, 0.01, BatchingPolicy(1, 0.0), LoadWindow(0.0, 1.0, 1.0))
    assert all(r.start_s == r.arrival_s for r in records)
    assert all(r.end_s - r.arrival_s == pytest.approx(0.01) for r in records)


def test_batches_never_exceed_max_batch_and_take_the_backlog() -> None:
    arrivals = [0.0] * 20  # a burst
    records = _serve(arrivals, 0.1, BatchingPolicy(8, 0.0), LoadWindow(0.0, 1.0, 10.0))
    sizes = {}
    for r in records:
        sizes[r.batch_id] = r.batch_size
    assert max(sizes.values()) == 8
    assert sorted(sizes.values()) == [4, 8, 8]
    assert all(r.batch_size <= 8 for r in records)


def test_queue_delay_waits_for_more_requests_up_to_its_limit() -> None:
    """Requests 2 ms apart; with a 5 ms window a batch gathers 3 (t=0,2,4), with 0 it serves one at a time."""
    arrivals = [0.002 * i for i in range(6)]
    waited = _serve(arrivals, 0.001, BatchingPolicy(8, 0.005), LoadWindow(0.0, 1.0, 1.0))
    assert [r.batch_size for r in waited][:3] == [3, 3, 3]
    assert waited[0].start_s == pytest.approx(0.005)  # the window closed 5 ms after the oldest arrived
    greedy = _serve(arrivals, 0.001, BatchingPolicy(8, 0.0), LoadWindow(0.0, 1.0, 1.0))
    assert all(r.batch_size == 1 for r in greedy)


def test_a_full_batch_does_not_wait_out_the_window() -> None:
    arrivals = [0.0, 0.0, 0.0, 0.0, 0.5]
    records = _serve(arrivals, 0.01, BatchingPolicy(4, 1.0), LoadWindow(0.0, 1.0, 1.0))
    assert records[0].start_s == 0.0 and records[0].batch_size == 4


def test_what_is_not_finished_by_the_hard_stop_is_dropped_and_the_loop_ends() -> None:
    arrivals = [0.01 * i for i in range(100)]
    window = LoadWindow(0.0, 1.0, 0.5)  # hard stop at 1.5 s; the server does 8 requests/s (exact in binary)
    records = _serve(arrivals, 0.125, BatchingPolicy(1, 0.0), window)
    assert len(records) == 100
    done = [r for r in records if r.completed]
    assert len(done) == 12 and all(r.end_s <= window.hard_stop_s for r in done)
    stats = summarize_load(records, 100.0, window)
    assert stats.dropped == 88 and stats.overloaded
    assert stats.latency_ms_p99 == math.inf  # a dropped request is infinitely late


def test_warmup_requests_are_served_but_not_counted() -> None:
    arrivals = [0.1 * i for i in range(20)]
    window = LoadWindow(1.0, 1.0, 1.0)
    records = _serve(arrivals, 0.01, BatchingPolicy(1, 0.0), window)
    assert sum(r.warmup for r in records) == 10
    assert summarize_load(records, 10.0, window).requests == 10


def test_overload_is_flagged_when_the_server_falls_behind_without_drops() -> None:
    """Poisson at 120/s against a server of 100/s with a long grace: nothing dropped, but it fell behind."""
    spec = LoadSpec(120.0, 30.0, 0, BatchingPolicy(1, 0.0), slo_p99_ms=1e9, warmup_s=0.0)
    result = run_simulated_load(spec, lambda n: 0.01)
    assert result.stats.achieved_qps == pytest.approx(100.0, rel=0.02)
    assert result.stats.overloaded and result.stats.slo_met is False


def test_goodput_counts_the_requests_within_the_slo() -> None:
    arrivals = [0.01 * i for i in range(20)]
    window = LoadWindow(0.0, 0.2, 10.0)
    records = _serve(arrivals, 0.05, BatchingPolicy(1, 0.0), window)
    within = sum((r.end_s - r.arrival_s) * 1e3 <= 300 for r in records)
    stats = summarize_load(records, 100.0, window, slo_p99_ms=300.0)
    span = max(0.2, max(r.end_s for r in records) - min(r.end_s for r in records))  # achieved_qps's span
    assert stats.goodput_qps == pytest.approx(within / span)
    assert stats.goodput_qps <= stats.achieved_qps
    assert 0 < within < 20


def test_nearest_rank_is_an_observed_value() -> None:
    values = np.arange(1, 101, dtype=float)
    assert nearest_rank(values, 99) == 99 and nearest_rank(values, 50) == 50
    assert nearest_rank(np.array([1.0, math.inf]), 99) == math.inf
    assert math.isnan(nearest_rank(np.array([]), 50))


def test_counters_hear_every_completion_and_drop() -> None:
    arrivals = np.array([0.01 * i for i in range(30)])
    clock = VirtualClock()
    counters = LiveCounters()

    def model(n: int) -> float:
        clock.advance(0.1)
        return math.nan

    records = serve(
        SimulatedSource(arrivals, clock),
        model,
        clock,
        BatchingPolicy(2, 0.0),
        LoadWindow(0, 0.3, 0.3),
        counters,
    )
    done = sum(r.completed for r in records)
    assert counters.completed_total == done and counters.dropped_total == len(records) - done > 0


def test_threaded_load_issues_on_schedule_and_charges_from_it() -> None:
    """Real threads and a 20 ms model at 20 requests/s: every request is served; latency >= the model's time."""
    import time

    def model(n: int) -> float:
        time.sleep(0.02)
        return math.nan

    spec = LoadSpec(20.0, 1.5, 0, BatchingPolicy(4, 0.0), warmup_s=0.2)
    result = run_threaded_load(spec, model)
    measured = [r for r in result.records if not r.warmup]
    assert result.stats.dropped == 0 and len(measured) == result.stats.requests > 10
    assert all(r.end_s - r.arrival_s >= 0.02 for r in measured)
    assert all(r.issued_s >= r.arrival_s for r in measured)


def test_a_model_failure_in_the_serving_thread_reaches_the_caller() -> None:
    def broken(n: int) -> float:
        raise RuntimeError("kernel failed")

    with pytest.raises(RuntimeError, match="kernel failed"):
        run_threaded_load(LoadSpec(50.0, 0.5, 0, BatchingPolicy(1, 0.0), warmup_s=0.0), broken)


@pytest.mark.parametrize(("batch", "delay"), [(0, 0.0), (1, -0.1), (1, math.inf)])
def test_bad_batching_is_refused(batch: int, delay: float) -> None:
    with pytest.raises(ValueError):
        BatchingPolicy(batch, delay)


def test_the_request_log_is_allocated_up_front_and_grows_only_when_a_closed_loop_outruns_it() -> None:
    from bench.serving.clock import Request
    from bench.serving.server import RequestLog

    log = RequestLog(4)
    before = log.times.nbytes
    for i in range(4):
        log.put(Request(i, 0.1 * i, 0.1 * i), 1.0, 2.0, math.nan, 0, 4)
    assert log.times.nbytes == before  # a known schedule never reallocates
    log.put(Request(9, 0.9, 0.9), 3.0, 4.0, math.nan, 1, 1)  # a closed loop past its estimate
    assert len(log.times) >= 10
    records = log.records(warmup_s=0.15)
    assert [r.request_id for r in records] == [0, 1, 2, 3, 9]  # ids never put are not invented
    assert [r.warmup for r in records] == [True, True, False, False, False]
    assert records[-1].end_s == 4.0 and records[-1].batch_size == 1


def test_a_slow_server_that_keeps_up_is_not_overloaded() -> None:
    """A 3-s batch of up to 8 (capacity 2.67/s) at 0.5/s: its own latency is not lag (a review found it was)."""
    for seed in range(10):
        spec = LoadSpec(
            0.5, 10.0, seed, BatchingPolicy(8, 0.0), slo_p99_ms=1e6, slowest_batch_s=3.0, warmup_s=0.0
        )
        stats = run_simulated_load(spec, lambda n: 3.0).stats
        assert stats.dropped == 0 and not stats.overloaded, seed
