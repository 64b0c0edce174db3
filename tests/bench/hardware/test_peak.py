"""Measured device peak: real (small) measurements on CPU, and the per-device JSON cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.device import Device, device_name
from bench.hardware import peak

SMALL = {"sizes": (32, 64), "copy_mb": 4, "reps": 2, "max_seconds_per_size": 0.2}


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cpu_peak_is_positive_and_says_what_it_skipped() -> None:
    result = peak.measure_peak(Device("cpu"), **SMALL)
    assert result.flops["fp32"] > 0
    assert result.flops["bf16"] > 0
    assert result.copy_bytes_s > 0
    assert "tf32" in result.skipped and "CPU" in result.skipped["tf32"]
    assert ("int8" in result.flops) != ("int8" in result.skipped)  # measured or skipped with a reason
    assert ("fp16" in result.flops) != ("fp16" in result.skipped)
    assert result.threads == torch.get_num_threads()
    assert result.memory_bytes > 0
    assert {d["dtype"] for d in result.details} >= {"fp32", "bf16"}


def test_peak_is_cached_per_device_and_refresh_remeasures(
    cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = peak.measured_peak("cpu", **SMALL)
    path = cache_in_tmp / f"peak-{peak.slug(device_name(Device('cpu')))}.json"
    assert path.is_file()
    assert json.loads(path.read_text())["flops"]["fp32"] == first.flops["fp32"]

    def no_measuring(*args: object, **kwargs: object) -> peak.PeakResult:
        raise AssertionError("measured again instead of reading the cache")

    monkeypatch.setattr(peak, "measure_peak", no_measuring)
    assert peak.measured_peak("cpu") == first  # second call: the cache
    with pytest.raises(AssertionError, match="measured again"):
        peak.measured_peak("cpu", refresh=True)


def test_stale_or_corrupt_cache_is_remeasured(cache_in_tmp: Path) -> None:
    first = peak.measured_peak("cpu", **SMALL)
    path = peak.cache_path(first.device_name)
    data = json.loads(path.read_text())
    data["threads"] = first.threads + 7  # measured with another thread count: another rate
    path.write_text(json.dumps(data))
    again = peak.measured_peak("cpu", **SMALL)
    assert again.threads == first.threads and again.measured_at >= first.measured_at
    path.write_text("{not json")
    assert peak.read_cached(first.device_name) is None
    assert peak.measured_peak("cpu", **SMALL).flops["fp32"] > 0


def test_slow_kernels_stop_growing_sizes() -> None:
    """A size whose extrapolated time exceeds the budget is not run (bf16 GEMM on AVX2 is ~1 GFLOP/s)."""
    result = peak.measure_peak(Device("cpu"), sizes=(16, 4096), copy_mb=1, reps=1, max_seconds_per_size=1e-6)
    assert {d["n"] for d in result.details} == {16}


def test_cache_dir_defaults_to_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GENBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert (
        peak.cache_path("AMD EPYC 7763 64-Core")
        == tmp_path / "xdg" / "genbench" / "peak-amd-epyc-7763-64-core.json"
    )


def test_peak_command_prints_cached_result(capsys: pytest.CaptureFixture[str]) -> None:
    measured = peak.measured_peak("cpu", **SMALL)
    assert main(["peak", "--device", "cpu", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["flops"]["fp32"] == measured.flops["fp32"]
    assert main(["peak", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "fp32" in out and "GB/s" in out and "skipped" in out


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
