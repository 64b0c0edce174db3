import time

import pytest

from bench.measure.energy import EnergyMeter, PowerSampler, integrate
from bench.measure.nvml import open_gpu


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


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_meter_takes_energy_from_the_counter_between_start_and_stop() -> None:
    clock, counter = _Clock(), {"j": 5_000.0}
    meter = EnergyMeter(lambda: 999.0, lambda: counter["j"], interval_s=10.0, clock=clock)
    counter["j"] += 40.0  # before start: warm-up, not billed
    meter.start()
    clock.now, counter["j"] = 2.0, counter["j"] + 600.0
    meter.stop()
    reading = meter.reading()
    assert reading is not None and reading.source == "energy-counter"
    assert reading.joules == pytest.approx(600.0) and reading.avg_power_w == pytest.approx(300.0)


def test_meter_prefers_instant_power_when_told_and_falls_back_to_the_counter() -> None:
    clock, counter = _Clock(), {"j": 0.0}
    meter = EnergyMeter(
        lambda: 200.0, lambda: counter["j"], prefer_counter=False, interval_s=10.0, clock=clock
    )
    meter.start()
    clock.now, counter["j"] = 1.0, 300.0  # the coarse counter disagrees with the 200 W readings
    meter.stop()
    reading = meter.reading()
    assert reading is not None and reading.source == "power-integral"
    assert reading.joules == pytest.approx(200.0)
    unreadable = EnergyMeter(lambda: float("nan"), lambda: counter["j"], prefer_counter=False, clock=clock)
    unreadable.start()
    clock.now, counter["j"] = 2.0, 450.0
    unreadable.stop()
    fallback = unreadable.reading()
    assert (
        fallback is not None
        and fallback.source == "energy-counter"
        and fallback.joules == pytest.approx(150.0)
    )


def test_meter_integrates_power_where_there_is_no_counter() -> None:
    meter = EnergyMeter(lambda: 250.0, lambda: float("nan"), interval_s=0.01)
    meter.start()
    time.sleep(0.2)
    meter.stop()
    reading = meter.reading()
    assert reading is not None and reading.source == "power-integral"
    assert reading.avg_power_w == pytest.approx(250.0) and reading.n_samples >= 3


def test_meter_never_started_has_no_reading() -> None:
    meter = EnergyMeter(lambda: 250.0, lambda: 1.0)
    meter.stop()  # the cell failed before its timed region: stop is harmless
    assert meter.reading() is None
