"""Measured device peak: windows until stable, refused when contended, cached per hw_id and thread count.

Real measurements stay small (SMALL); stability and contention are driven by
injected readings (a timer that reports chosen times, a contention meter fed
fake /proc/stat counters), never by burning a core or by a timed assertion.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import bench.cli.hardware
from bench.cli import main
from bench.core.device import Device, device_name
from bench.core.errors import EnvironmentProblem
from bench.hardware import peak
from bench.measure.contention import ContentionMeter, HostCpu

SMALL = {"sizes": (32, 64), "copy_mb": 4, "reps": 2, "max_seconds_per_size": 0.2}
CPU = Device("cpu")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class FakeTimer:
    """Reports the next of ``times_ms`` for each timed call without running it (the warm-up still runs)."""

    def __init__(self, times_ms: Iterator[float]) -> None:
        self.times_ms = times_ms

    def measure(self, fn: Callable[[], Any]) -> float:
        return next(self.times_ms)


def steady() -> FakeTimer:
    return FakeTimer(itertools.repeat(1.0))


def drifting() -> FakeTimer:
    """Every call 20% slower than the last: no two windows ever agree within 5%."""
    return FakeTimer(1.2**k for k in itertools.count())


def meter(other_cores: float, threads: int = 2, logical: int = 2) -> ContentionMeter:
    """A meter whose readings say others used ``other_cores`` cores all along (each clock read is 1 s later)."""
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    return ContentionMeter(
        threads,
        logical_cores=logical,
        read_host=lambda: HostCpu(busy_s=now[0] * (threads + other_cores), steal_s=0.0),
        read_own=lambda: now[0] * threads,
        read_load=lambda: 1.5,
        clock=clock,
        tick_s=0.0,  # exact readings: no counter rounding to allow for
    )


def quiet(**kwargs: Any) -> dict[str, Any]:
    """measured_peak's arguments for a small, quiet, stable measurement."""
    return {**SMALL, "meter": meter(0.0), "precheck_s": 0, "timer": steady(), **kwargs}


def peak_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("peak-*.json")) if cache.is_dir() else []


def test_cpu_peak_is_positive_and_says_what_it_skipped() -> None:
    result = peak.measure_peak(CPU, **SMALL)
    assert result.flops["fp32"] > 0
    assert result.flops["bf16"] > 0
    assert result.copy_bytes_s > 0
    assert "tf32" in result.skipped and "CPU" in result.skipped["tf32"]
    assert ("int8" in result.flops) != ("int8" in result.skipped)  # measured or skipped with a reason
    assert ("fp16" in result.flops) != ("fp16" in result.skipped)
    assert result.threads == torch.get_num_threads()
    assert result.memory_bytes > 0
    assert {d["dtype"] for d in result.details} >= {"fp32", "bf16"}
    assert set(result.windows) == set(result.stable) == {*result.flops, peak.COPY}
    assert all(peak.MIN_WINDOWS <= len(w) <= peak.MAX_WINDOWS for w in result.windows.values())
    assert result.hw_id and len(result.hw_id) == 12
    assert result.contended is not None and result.other_cores is not None  # read from /proc/stat


def test_windows_stop_once_the_best_two_agree() -> None:
    assert peak.agreed_rate([100.0, 98.0]) == 100.0
    assert peak.agreed_rate([100.0, 80.0]) is None
    assert peak.agreed_rate([100.0]) is None
    # two windows that dipped together under a neighbour agree, but the best is not reproduced
    assert peak.agreed_rate([150.0, 185.0, 150.0]) is None
    assert peak.agreed_rate([150.0, 185.0, 150.0, 183.0]) == 185.0
    assert peak.spread([200.0, 150.0, 190.0]) == pytest.approx(0.05)

    result = peak.measure_peak(CPU, **SMALL, meter=meter(0.0), timer=steady())
    assert all(len(w) == peak.MIN_WINDOWS for w in result.windows.values())
    assert all(result.stable.values()) and not result.unstable
    assert result.flops["fp32"] == pytest.approx(2 * 64**3 / 1e-3)  # the best size at the steady 1 ms


def test_stable_quiet_peak_is_cached_under_hw_id_and_threads(
    cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = peak.measured_peak("cpu", **quiet())
    hw_id, threads = peak.cache_key(CPU)
    assert (first.hw_id, first.threads) == (hw_id, threads) and threads == torch.get_num_threads()
    path = peak.cache_path(first.device_name, hw_id, threads)
    assert path.name == f"peak-{peak.slug(device_name(CPU))}-{hw_id}-{threads}t.json"
    assert peak_files(cache_in_tmp) == [path]
    data = json.loads(path.read_text())
    assert data["cache_version"] == peak.CACHE_VERSION and data["flops"]["fp32"] == first.flops["fp32"]
    assert data["contended"] is False and data["other_cores"] == 0.0 and all(data["stable"].values())
    assert data["measured_at"] == first.measured_at

    def no_measuring(*args: object, **kwargs: object) -> peak.PeakResult:
        raise AssertionError("measured again instead of reading the cache")

    monkeypatch.setattr(peak, "measure_peak", no_measuring)
    assert peak.measured_peak("cpu") == first  # second call: the cache
    assert peak.usable_peak(CPU, device_name(CPU)) == first  # what a run finds
    with pytest.raises(AssertionError, match="measured again"):
        peak.measured_peak("cpu", refresh=True, meter=meter(0.0), precheck_s=0)


def test_peak_of_other_hardware_or_threads_is_not_used(cache_in_tmp: Path) -> None:
    first = peak.measured_peak("cpu", **quiet())
    other = dataclasses.replace(first, hw_id="0123456789ab")
    path = peak.write_cache(other)
    peak.cache_path(first.device_name, first.hw_id, first.threads).unlink()
    assert peak.usable_peak(CPU, first.device_name) is None  # a run on this machine ignores it
    assert peak.read_cached(first.device_name) == other  # a projection by device name still finds it
    data = json.loads(path.read_text())
    peak.write_cache(dataclasses.replace(first, threads=first.threads + 7))
    assert peak.usable_peak(CPU, first.device_name) is None  # measured with another thread count
    assert peak.read_cached(first.device_name, threads=first.threads + 7) is not None
    assert peak.read_cached(first.device_name, hw_id=first.hw_id) is not None  # any thread count
    assert peak.read_cached(first.device_name, hw_id=first.hw_id, threads=first.threads) is None
    assert data["hw_id"] == "0123456789ab"


def test_busy_machine_is_refused_and_nothing_cached(
    cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # busy before measuring: refused after the idle look, without measuring
    def no_measuring(*args: object, **kwargs: object) -> peak.PeakResult:
        raise AssertionError("measured on a busy machine")

    with monkeypatch.context() as patch:
        patch.setattr(peak, "measure_peak", no_measuring)
        with pytest.raises(EnvironmentProblem, match="not measured: the machine is busy") as before:
            peak.measured_peak("cpu", **{**quiet(), "meter": meter(1.0), "precheck_s": 0.01})
    assert "others used 1.00 cores" in str(before.value) and "\n" not in str(before.value)
    # busy while measuring: measured, recorded, refused
    with pytest.raises(
        EnvironmentProblem, match="not cached: the machine was busy while measuring"
    ) as during:
        peak.measured_peak("cpu", **{**quiet(), "meter": meter(0.5)})
    assert "others used 0.50 cores" in str(during.value) and "load average 1.50" in str(during.value)
    assert peak_files(cache_in_tmp) == []
    result = peak.measure_peak(CPU, **SMALL, meter=meter(0.5), timer=steady())
    assert result.contended is True and result.other_cores == pytest.approx(0.5)
    assert result.host_busy_pct == pytest.approx(25.0) and result.load_avg_1m == 1.5
    assert peak.refusal(result) is not None
    # the same neighbour beside a spare core leaves a 1-thread measurement alone
    spare = peak.measure_peak(CPU, **SMALL, meter=meter(0.5, threads=1), timer=steady())
    assert spare.contended is False and peak.refusal(spare) is None


def test_unstable_rates_are_recorded_and_not_cached(cache_in_tmp: Path) -> None:
    result = peak.measure_peak(CPU, **SMALL, meter=meter(0.0), timer=drifting())
    assert set(result.unstable) == {*result.flops, peak.COPY}
    assert all(len(w) == peak.MAX_WINDOWS for w in result.windows.values())
    assert result.flops["fp32"] == max(result.windows["fp32"])  # the best seen, flagged
    with pytest.raises(EnvironmentProblem, match="did not stabilise") as refused:
        peak.measured_peak("cpu", **{**quiet(), "timer": drifting()})
    message = str(refused.value)
    assert f"fp32: {peak.MAX_WINDOWS} windows" in message and "% apart)" in message and "\n" not in message
    assert peak_files(cache_in_tmp) == []


def test_old_or_corrupt_cache_is_remeasured(cache_in_tmp: Path) -> None:
    first = peak.measured_peak("cpu", **quiet())
    path = peak.cache_path(first.device_name, first.hw_id, first.threads)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "cache_version": 2}))  # written before hw_id keys and windows
    assert peak.usable_peak(CPU, first.device_name) is None
    (cache_in_tmp / f"peak-{peak.slug(first.device_name)}.json").write_text(
        json.dumps({**data, "cache_version": 2})
    )  # the version-2 file name, keyed by device name alone
    assert peak.read_cached(first.device_name) is None
    again = peak.measured_peak("cpu", **quiet())
    assert again.measured_at >= first.measured_at and peak.usable_peak(CPU, first.device_name) == again
    path.write_text("{not json")
    assert peak.read_cached(first.device_name) is None
    assert peak.measured_peak("cpu", **quiet()).flops["fp32"] > 0


def test_slow_kernels_stop_growing_sizes() -> None:
    """A size whose extrapolated time exceeds the budget is not run (bf16 GEMM on AVX2 is ~1 GFLOP/s)."""
    result = peak.measure_peak(CPU, sizes=(16, 4096), copy_mb=1, reps=1, max_seconds_per_size=1e-6)
    assert {d["n"] for d in result.details} == {16}


def test_cache_dir_defaults_to_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GENBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert (
        peak.cache_path("AMD EPYC 7763 64-Core", "0123456789ab", 2)
        == tmp_path / "xdg" / "genbench" / "peak-amd-epyc-7763-64-core-0123456789ab-2t.json"
    )
    assert peak.cache_path("NVIDIA H100", "abc", 0).name == "peak-nvidia-h100-abc.json"


def _dated(**changes: Any) -> peak.PeakResult:
    base = peak.PeakResult(
        device="cpu", device_name="AMD EPYC", kind="cpu", measured_at="2026-12-01T09:00:00+00:00",
        torch_version="2.13", threads=2, memory_bytes=1, flops={"fp32": 0.178e12, "bf16": 1e9}, skipped={},
        copy_bytes_s=1e10, hw_id="0123456789ab", windows={"fp32": [0.178e12, 0.175e12, 0.17e12]},
        stable={"fp32": True}, other_cores=0.02, host_busy_pct=1.0, steal_pct=0.0, contended=False,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_peak_note_above_100_percent_names_the_peak_and_what_to_do() -> None:
    note = peak.peak_note(_dated(), 170.0, "fp32")
    assert note is not None
    assert note.startswith(
        "pct_of_peak 170% is above the measured peak (fp32 0.178 TFLOP/s, measured 2026-12-01"
    )
    assert "stable, not contended (others used 0.02 cores" in note and "bench peak --refresh" in note
    assert "bf16" in (peak.peak_note(_dated(), 170.0) or "")  # without the dtype: every rate
    old = peak.peak_note(_dated(windows={}, stable={}, other_cores=None, contended=None), 120.0)
    assert old is not None and "stability not recorded, contention not recorded" in old
    assert peak.peak_note(_dated(), 50.0) is None
    assert peak.peak_note(_dated(), 100.0) is None
    assert peak.peak_note(_dated(), math.nan) is None
    assert peak.peak_note(None, math.nan) is None


# ----------------------------------------------------------------- bench peak
@pytest.fixture
def small_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """`bench peak` measuring small and steady, with a meter that reads ``other_cores``."""

    def use(other_cores: float) -> None:
        measure = peak.measure_peak

        def small(device: Device, meter: ContentionMeter | None = None) -> peak.PeakResult:
            return measure(device, **SMALL, meter=meter, timer=steady())

        monkeypatch.setattr(peak, "measure_peak", small)
        monkeypatch.setattr(peak, "default_meter", lambda device: meter(other_cores))
        monkeypatch.setattr(peak, "PRECHECK_S", 0.01)

    return use


def test_peak_command_says_when_it_measures_and_when_it_reuses(
    capsys: pytest.CaptureFixture[str], small_cli: Callable[[float], None], cache_in_tmp: Path
) -> None:
    small_cli(0.0)
    assert main(["peak", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    hw_id, threads = peak.cache_key(CPU)
    key = f"hw_id {hw_id}, {threads} thread{'s' if threads > 1 else ''}"
    assert out.startswith(f"measuring the peak of cpu ({key})")
    assert "using the cached" not in out and "cached in" in out
    assert (
        "fp32" in out and "GB/s" in out and "skipped" in out and "3 windows" in out and "not contended" in out
    )
    measured = peak.usable_peak(CPU, device_name(CPU))
    assert measured is not None

    assert main(["peak", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"using the cached peak from {measured.date} ({key}); --refresh re-measures")
    assert "measuring the peak" not in out
    assert main(["peak", "--device", "cpu", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["flops"]["fp32"] == measured.flops["fp32"] and printed["hw_id"] == hw_id


def test_peak_command_on_a_busy_machine_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], small_cli: Callable[[float], None], cache_in_tmp: Path
) -> None:
    small_cli(1.0)
    assert main(["peak", "--device", "cpu", "--refresh"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("measuring the peak of cpu")
    assert captured.err.startswith("genbench: error: peak of cpu not measured: the machine is busy")
    assert captured.err.count("\n") == 1 and "others used 1.00 cores" in captured.err
    assert peak_files(cache_in_tmp) == []


def test_peak_command_threads_sets_and_restores_torch_threads(
    capsys: pytest.CaptureFixture[str], small_cli: Callable[[float], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    small_cli(0.0)
    saved = torch.get_num_threads()
    seen: list[int] = []
    real = bench.cli.hardware._peak

    def spy(device: Device, args: Any) -> int:
        seen.append(torch.get_num_threads())
        return real(device, args)

    monkeypatch.setattr(bench.cli.hardware, "_peak", spy)
    assert main(["peak", "--device", "cpu", "--threads", "1"]) == 0
    assert seen == [1] and torch.get_num_threads() == saved
    assert ", 1 thread)" in capsys.readouterr().out
    assert main(["peak", "--device", "cpu", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_peak_command_bad_device_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["peak", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genbench: error: unknown device 'tpu'") and err.count("\n") == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_cuda_peak_measures_tensor_core_dtypes() -> None:
    saved = torch.backends.cuda.matmul.allow_tf32
    result = peak.measure_peak(Device("cuda", 0), sizes=(1024,), copy_mb=64, reps=2)
    assert torch.backends.cuda.matmul.allow_tf32 == saved  # flags restored
    assert result.flops["fp32"] > 0 and result.flops["fp16"] > result.flops["fp32"]
    assert result.copy_bytes_s > 0
    assert result.hw_id and set(result.windows) == {*result.flops, peak.COPY}
