"""Sampling-run metrics from known step-clock marks: the UNet / VAE / sampler split, s/image and it/s."""

from __future__ import annotations

import pytest

from bench.measure.diffusion import MARKS_PER_STEP, SamplingMetrics, SamplingRun

# two steps: (before UNet, after UNet, after the step rule) x 2, then after the VAE
MARKS = [1.0, 11.0, 12.0, 13.0, 23.0, 25.0, 40.0]


def test_a_run_splits_into_unet_calls_vae_and_the_rest() -> None:
    run = SamplingRun.from_marks(MARKS, steps=2)
    assert run.unet_ms == pytest.approx((10.0, 10.0))
    assert run.vae_ms == pytest.approx(15.0)
    assert run.e2e_ms == pytest.approx(40.0)
    assert run.overhead_ms == pytest.approx(40.0 - 20.0 - 15.0)  # step rules, guidance, input scaling


def test_metrics_of_one_run_follow_the_definitions() -> None:
    m = SamplingMetrics.of([SamplingRun.from_marks(MARKS, 2)], batch=2, guidance=7.5, sampler="ddim")
    assert (m.steps, m.guidance, m.sampler) == (2, 7.5, "ddim")
    assert m.s_per_image == pytest.approx(0.040 / 2)
    assert m.images_s == pytest.approx(2 / 0.040)
    assert m.it_s == pytest.approx(2 / 0.040)
    assert m.unet_step_ms == pytest.approx(10.0)
    assert m.vae_decode_ms == pytest.approx(15.0)
    assert m.sampler_overhead_ms == pytest.approx(5.0)


def test_metrics_are_medians_over_runs() -> None:
    slow = [0.0, 30.0, 31.0, 31.0, 61.0, 62.0, 100.0]  # unet 30 ms a step, vae 38, overhead 2
    fast = [0.0, 5.0, 5.0, 5.0, 10.0, 10.0, 20.0]  # unet 5, vae 10, overhead 0
    runs = [SamplingRun.from_marks(m, 2) for m in (MARKS, slow, fast)]
    m = SamplingMetrics.of(runs, batch=1, guidance=1.0, sampler="euler")
    assert m.s_per_image == pytest.approx(0.040)  # median of 40, 100, 20 ms
    assert m.it_s == pytest.approx(2 / 0.040)
    assert m.unet_step_ms == pytest.approx(10.0)  # median of 10, 30, 5
    assert m.vae_decode_ms == pytest.approx(15.0)  # median of 15, 38, 10
    assert m.sampler_overhead_ms == pytest.approx(2.0)  # median of 5, 2, 0


def test_a_wrong_mark_count_is_refused() -> None:
    assert len(MARKS) == MARKS_PER_STEP * 2 + 1
    with pytest.raises(ValueError, match="a 2-step run has 6 marks, not 7"):
        SamplingRun.from_marks(MARKS[:-1], steps=2)
    with pytest.raises(ValueError, match="a 3-step run has 7 marks, not 10"):
        SamplingRun.from_marks(MARKS, steps=3)


def test_no_run_is_refused() -> None:
    with pytest.raises(ValueError, match="no timed sampling run"):
        SamplingMetrics.of([], batch=1, guidance=7.5, sampler="ddim")
