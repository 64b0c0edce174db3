"""TensorRT: skipped with a reason where it cannot run; a real engine build where it can."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types

import pytest
import torch

from bench.core.device import Device
from bench.core.errors import PipelineError
from bench.runtimes.tensorrt import input_order, torch_dtype
from optimizers.registry import parse_pipeline
from optimizers.tensorrt_pass import TensorRT, engine_key, profile_batches, timing_cache_path
from tests.conftest import pass_context

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def test_tensorrt_on_cpu_is_skipped_with_a_reason() -> None:
    assert TensorRT(mode="fp16").applies_to(Device("cpu")) == "TensorRT runs on NVIDIA GPUs only"


def test_tensorrt_without_the_library_says_so(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "tensorrt is not installed" in TensorRT().applies_to(Device("cuda", 0))


def test_tensorrt_mode_validation() -> None:
    with pytest.raises(PipelineError, match="tensorrt mode 'fp8' unknown"):
        TensorRT(mode="fp8")


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """Stands in for the `tensorrt` module where only its version is read (no engine is built)."""

    def install(version: str) -> None:
        module = types.ModuleType("tensorrt")
        module.__version__ = version  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())

    return install


def test_precision_flag_modes_are_skipped_on_tensorrt_11(fake_tensorrt) -> None:
    fake_tensorrt("11.4.0.106")
    reason = TensorRT(mode="fp16").applies_to(Device("cuda", 0))
    assert reason is not None and "strongly typed" in reason and "fp16+tensorrt" in reason
    assert TensorRT().applies_to(Device("cuda", 0)) is None  # fp32 builds there


def test_precision_flag_modes_apply_on_tensorrt_10(fake_tensorrt) -> None:
    fake_tensorrt("10.13.3.9")
    assert all(TensorRT(mode=mode).applies_to(Device("cuda", 0)) is None for mode in ("fp16", "int8", "best"))


def test_engine_profiles_cover_the_run_batches_and_this_cell() -> None:
    ctx = pass_context((torch.zeros(8, 4),))
    assert profile_batches(ctx) == (8,)
    ctx = dataclasses.replace(ctx, batch_sizes=(32, 1))
    assert profile_batches(ctx) == (1, 8, 32)


def test_engine_key_follows_the_model_bytes_and_the_gpu(tmp_path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"graph-a")
    ctx = pass_context((torch.zeros(2, 4),))
    key = engine_key(ctx, onnx, "fp16", "10.13", "NVIDIA H100 80GB HBM3")
    assert key == engine_key(ctx, onnx, "fp16", "10.13", "NVIDIA H100 80GB HBM3")
    assert key != engine_key(ctx, onnx, "fp16", "10.13", "NVIDIA H200")
    assert key != engine_key(ctx, onnx, "int8", "10.13", "NVIDIA H100 80GB HBM3")
    onnx.write_bytes(b"graph-b")
    assert key != engine_key(ctx, onnx, "fp16", "10.13", "NVIDIA H100 80GB HBM3")


def test_timing_cache_is_kept_per_version_and_gpu(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GENBENCH_CACHE_DIR", str(tmp_path))
    h100 = timing_cache_path("10.13.3.9", "NVIDIA H100 80GB HBM3")
    assert h100.parent == tmp_path / "tensorrt"
    assert h100 != timing_cache_path("10.13.3.9", "NVIDIA H200")
    assert h100 != timing_cache_path("10.12.0.36", "NVIDIA H100 80GB HBM3")


def test_engine_inputs_are_matched_to_model_arguments() -> None:
    assert input_order(["input_1", "input_0", "input_10", "input_2"]) == [
        "input_0",
        "input_1",
        "input_2",
        "input_10",
    ]
    assert input_order(["latent", "timestep"]) == ["latent", "timestep"]


def test_tensorrt_types_map_to_torch() -> None:
    half = types.SimpleNamespace(name="HALF")
    assert torch_dtype(half) is torch.float16
    with pytest.raises(TypeError, match="INT4"):
        torch_dtype(types.SimpleNamespace(name="INT4"))


def test_tensorrt_row_is_skipped_on_cpu(run_matrix) -> None:
    pytest.importorskip("onnx")
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "tensorrt:fp16"), batch_sizes=(1,))
    assert list(frame["status"]) == ["ok", "skipped"]
    assert "TensorRT runs on NVIDIA GPUs only" in frame.iloc[1]["reason"]


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and an NVIDIA GPU")
def test_tensorrt_engine_matches_eager(run_matrix) -> None:  # pragma: no cover - GPU only
    pytest.importorskip("onnx")
    frame = run_matrix(
        models=("dcgan", "unet"),
        pipelines=("fp32", "tensorrt", "tensorrt:fp16", "tensorrt:int8"),
        batch_sizes=(1, 2),
        device="cuda:0",
    )
    assert (frame["status"] == "ok").all(), frame["reason"].tolist()
    fp32 = frame[frame["pipeline"] == "tensorrt"]
    assert (fp32["psnr_db"] > 60).all()
    assert (frame[frame["pipeline"] == "tensorrt:fp16"]["psnr_db"] > 35).all()
    assert (frame[frame["pipeline"] == "tensorrt:int8"]["psnr_db"] > 15).all()  # calibrated on random weights
    # one engine per (model, pipeline) serves both batch sizes: the second batch loads it
    assert fp32["notes"].str.contains("cache hit").sum() >= 2
    assert frame[frame["runtime"] == "tensorrt"]["peak_device_mem_mb"].isna().all()  # not torch memory
    assert parse_pipeline("tensorrt").final_kind == "tensorrt"
