import time

import pytest

from bench.energy import PowerSampler, integrate
from bench.nvml import open_gpu


def test_integrate_constant_and_ramp() -> None:
    assert integrate([0.0, 1.0, 2.0], [100.0, 100.0, 100.0]).joules == pytest.approx(200.0)
    ramp = integrate([0.0, 1.0], [0.0, 50.0])
    assert ramp.joules == pytest.approx(25.0)
    assert ramp.avg_power_w == pytest.approx(25.0)


def test_integrate_needs_two_samples() -> None:
    reading = integrate([0.0], [100.0])
    assert reading.joules != reading.joules  # NaN


def test_sampler_thread_reads_at_its_rate() -> None:
    with PowerSampler(lambda: 250.0, interval_s=0.01) as sampler:
        time.sleep(0.3)
    reading = sampler.reading()
    assert reading.n_samples >= 3  # start, end, and at least one reading from the thread
    assert reading.avg_power_w == pytest.approx(250.0)
    assert reading.seconds >= 0.3
    assert reading.joules == pytest.approx(250.0 * reading.seconds)


def test_nvml_reader_is_none_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert open_gpu(0) is None
