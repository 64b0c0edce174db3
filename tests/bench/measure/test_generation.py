"""Generation metrics from known step times, decode bytes, and token fidelity on known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.measure.generation import (
    GenerationMetrics,
    GenerationTimes,
    decode_bytes,
    greedy_match_length,
    token_fidelity,
)
from bench.measure.step_clock import HostStepClock
from tests.bench.measure.fakes import FakeClock


def times_from_fake_clock(batch: int, prompt: int, steps_s: list[list[float]]) -> GenerationTimes:
    """Each generation's step durations (s) played on a fake clock through a HostStepClock."""
    clock = FakeClock()
    steps = HostStepClock(clock=clock)
    generations = []
    for durations in steps_s:
        clock.advance(1.0)  # time between generations is nobody's
        steps.start()
        for seconds in durations:
            clock.advance(seconds)
            steps.mark()
        generations.append(tuple(steps.times_ms()))
    return GenerationTimes(batch, prompt, len(steps_s[0]), tuple(generations))


def test_metrics_of_one_generation_follow_the_definitions() -> None:
    # prefill 10 ms, then decode steps of 2, 3 and 1 ms: marks at 10, 12, 15, 16
    times = times_from_fake_clock(batch=2, prompt=8, steps_s=[[0.010, 0.002, 0.003, 0.001]])
    assert times.steps_ms[0] == pytest.approx((10.0, 12.0, 15.0, 16.0))
    m = GenerationMetrics.of(
        times, "static", cache_bytes=3 * 2**20, decode_bytes_per_step=1e6, copy_bytes_s=1e10
    )
    assert m.prompt_len == 8 and m.new_tokens == 4 and m.kv_cache == "static"
    assert m.ttft_ms == pytest.approx(10.0)
    assert m.e2e_ms == pytest.approx(16.0)
    assert m.tpot_ms == pytest.approx((16.0 - 10.0) / 3)
    assert m.itl_ms_p50 == pytest.approx(2.0)
    assert m.itl_ms_p99 == pytest.approx(float(np.percentile([2.0, 3.0, 1.0], 99)))
    assert m.output_tokens_s == pytest.approx(2 * 4 / 0.016)
    assert m.tokens_s_per_seq == pytest.approx(1 / 0.002)
    assert m.prefill_tokens_s == pytest.approx(2 * 8 / 0.010)
    assert m.kv_cache_mb == pytest.approx(3.0)
    assert m.decode_gb_s == pytest.approx(1e6 / 0.002 / 1e9)  # 0.5 GB/s
    assert m.pct_of_bandwidth == pytest.approx(100 * 0.5e9 / 1e10)  # 5 %
    assert math.isnan(m.energy_j_per_token_prefill) and math.isnan(m.energy_j_per_token_decode)


def test_without_a_copy_bandwidth_the_share_is_not_invented() -> None:
    times = times_from_fake_clock(1, 4, [[0.004, 0.001]])
    m = GenerationMetrics.of(times, "dynamic", 0, 1e6, None)
    assert m.decode_gb_s == pytest.approx(1.0)
    assert math.isnan(m.pct_of_bandwidth)


def test_columns_are_medians_across_generations_and_itl_pools_every_step() -> None:
    times = times_from_fake_clock(
        batch=1,
        prompt=4,
        steps_s=[[0.010, 0.001, 0.001], [0.030, 0.005, 0.005], [0.020, 0.002, 0.004]],
    )
    m = GenerationMetrics.of(times, "static", 0, 0.0, None)
    assert m.ttft_ms == pytest.approx(20.0)  # median of 10, 30, 20
    assert m.e2e_ms == pytest.approx(26.0)  # median of 12, 40, 26
    assert m.tpot_ms == pytest.approx(3.0)  # median of 1, 5, 3
    assert sorted(times.itls()) == pytest.approx([1.0, 1.0, 2.0, 4.0, 5.0, 5.0])
    assert m.itl_ms_p50 == pytest.approx(3.0)  # pooled: between 2 and 4, not a median of medians
    assert m.output_tokens_s == pytest.approx(3 / 0.026)


def test_one_new_token_has_no_tpot() -> None:
    times = times_from_fake_clock(2, 8, [[0.005], [0.007]])
    m = GenerationMetrics.of(times, "static", 0, 1e6, 1e10)
    assert m.ttft_ms == pytest.approx(6.0) and m.e2e_ms == pytest.approx(6.0)
    for value in (m.tpot_ms, m.tokens_s_per_seq, m.itl_ms_p50, m.itl_ms_p99, m.decode_gb_s):
        assert math.isnan(value)
    assert math.isnan(m.pct_of_bandwidth)
    assert m.output_tokens_s == pytest.approx(2 / 0.006)


def test_generation_times_refuse_wrong_step_counts() -> None:
    with pytest.raises(ValueError, match="no timed generation"):
        GenerationTimes(1, 4, 3, ())
    with pytest.raises(ValueError, match="a generation of 3 tokens has 2 step times"):
        GenerationTimes(1, 4, 3, ((1.0, 2.0, 3.0), (1.0, 2.0)))


def test_decode_bytes_of_a_static_cache_read_it_whole() -> None:
    assert decode_bytes(1000, 500, "static", prompt=8, new=6) == 1500.0


def test_decode_bytes_of_a_dynamic_cache_average_what_each_step_holds() -> None:
    prompt, new, per_token = 8, 6, 10
    end = per_token * (prompt + new - 1)  # what a dynamic cache holds after the last decode step
    held = [per_token * (prompt + i) for i in range(1, new)]  # decode step i attends over prompt + i
    assert decode_bytes(1000, end, "dynamic", prompt, new) == pytest.approx(1000 + sum(held) / len(held))
    assert decode_bytes(1000, end, "dynamic", prompt, new) < decode_bytes(1000, end, "static", prompt, new)


def test_identical_logits_are_a_perfect_match() -> None:
    logits = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))
    tokens = logits.argmax(-1)
    fid = token_fidelity(logits, logits.clone(), tokens, tokens.clone())
    assert fid.token_match == 1.0
    assert fid.kl_div == 0.0
    assert fid.greedy_match_len == 5.0
    assert fid.ok


def test_token_match_is_the_share_of_agreeing_argmaxes() -> None:
    ref = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(1))
    out = ref.clone()
    for b, n in ((0, 1), (1, 3)):  # two of the eight positions get another argmax
        out[b, n, (int(ref[b, n].argmax()) + 1) % 7] = ref[b, n].max() + 1.0
    fid = token_fidelity(ref, out, ref.argmax(-1), ref.argmax(-1), min_token_match=0.8)
    assert fid.token_match == pytest.approx(6 / 8)
    assert fid.kl_div > 0
    assert not fid.ok  # 0.75 < 0.8
    assert token_fidelity(ref, out, ref.argmax(-1), ref.argmax(-1), min_token_match=0.75).ok


def test_kl_div_is_the_mean_of_kl_reference_to_pipeline() -> None:
    # position 0: p = (1/2, 1/2), q = (1/4, 3/4); position 1 identical
    ref = torch.tensor([[[0.0, 0.0], [1.0, 2.0]]], dtype=torch.float64)
    out = torch.tensor([[[0.0, math.log(3.0)], [1.0, 2.0]]], dtype=torch.float64)
    expected = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)) / 2
    tokens = torch.zeros(1, 2, dtype=torch.int64)
    fid = token_fidelity(ref, out, tokens, tokens)
    assert fid.kl_div == pytest.approx(expected, rel=1e-9)
    # KL is not symmetric: the direction is KL(fp32 || pipeline)
    reverse = (0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)) / 2
    assert token_fidelity(out, ref, tokens, tokens).kl_div == pytest.approx(reverse, rel=1e-9)


def test_greedy_match_len_counts_up_to_the_first_divergence_and_averages() -> None:
    ref = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]])
    ours = torch.tensor([[1, 2, 9, 4, 5], [1, 2, 3, 4, 5]])  # departs at position 2, agrees again later
    assert greedy_match_length(ref, ours) == pytest.approx((2 + 5) / 2)
    logits = torch.zeros(2, 5, 6)
    assert token_fidelity(logits, logits, ref, ours).greedy_match_len == pytest.approx(3.5)
    assert greedy_match_length(ref, torch.zeros_like(ref)) == 0.0


def test_non_finite_logits_match_nothing() -> None:
    ref = torch.randn(1, 3, 4)
    out = ref.clone()
    out[0, 1, 2] = float("nan")
    tokens = ref.argmax(-1)
    fid = token_fidelity(ref, out, tokens, tokens)
    assert (fid.token_match, fid.kl_div, fid.greedy_match_len) == (0.0, math.inf, 0.0)
    assert not fid.ok


def test_mismatched_shapes_are_refused() -> None:
    tokens = torch.zeros(1, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="logits shape"):
        token_fidelity(torch.zeros(1, 3, 4), torch.zeros(1, 3, 5), tokens, tokens)
    with pytest.raises(ValueError, match="tokens shape"):
        token_fidelity(
            torch.zeros(1, 3, 4), torch.zeros(1, 3, 4), tokens, torch.zeros(1, 2, dtype=torch.int64)
        )
