"""TensorRT: skipped with a reason where it cannot run; a real engine build where it can."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bench.devices import Device
from optimizers.registry import PipelineError, parse_pipeline
from optimizers.tensorrt_pass import TensorRT

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def test_tensorrt_on_cpu_is_skipped_with_a_reason() -> None:
    assert TensorRT("fp16").applies_to(Device("cpu")) == "TensorRT runs on NVIDIA GPUs only"


def test_tensorrt_without_the_library_says_so(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "TensorRT is not installed" in TensorRT().applies_to(Device("cuda", 0))


def test_tensorrt_mode_validation() -> None:
    with pytest.raises(PipelineError, match="tensorrt mode 'fp8' unknown"):
        TensorRT("fp8")


def test_tensorrt_row_is_skipped_on_cpu(run_matrix) -> None:
    pytest.importorskip("onnx")
    frame = run_matrix(models=("dcgan",), pipelines=("fp32", "tensorrt:fp16"), batch_sizes=(1,))
    assert list(frame["status"]) == ["ok", "skipped"]
    assert "TensorRT runs on NVIDIA GPUs only" in frame.iloc[1]["reason"]


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and an NVIDIA GPU")
def test_tensorrt_engine_matches_eager(run_matrix) -> None:  # pragma: no cover - GPU only
    frame = run_matrix(
        models=("dcgan",), pipelines=("fp32", "tensorrt", "tensorrt:fp16"), batch_sizes=(2,), device="cuda:0"
    )
    assert list(frame["status"]) == ["ok", "ok", "ok"], frame["reason"].tolist()
    assert frame.iloc[1]["psnr_db"] > 60
    assert frame.iloc[2]["psnr_db"] > 35
    assert parse_pipeline("tensorrt").final_kind == "tensorrt"
