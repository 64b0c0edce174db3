"""The CUDA path of the runner, on a real GPU (skipped with a reason elsewhere)."""

from __future__ import annotations

import pytest
import torch

from bench.devices import Device
from bench.timing import EventTimer, timer_for

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
]


def test_cuda_uses_event_timer_and_measures_real_work() -> None:
    timer = timer_for(Device("cuda", 0))
    assert isinstance(timer, EventTimer)
    a = torch.randn(2048, 2048, device="cuda")
    for _ in range(3):  # cuBLAS handle creation and kernel loading happen on first use
        a @ a
    torch.cuda.synchronize()
    ms = timer.measure(lambda: a @ a)
    assert 0 < ms < 10_000  # device time of real work was recorded (events on the current stream)


def test_cuda_matrix_runs_with_device_memory(run_matrix) -> None:
    frame = run_matrix(
        models=("unet",),
        pipelines=("fp32", "fp16", "bf16", "channels_last"),
        batch_sizes=(2,),
        device="cuda:0",
    )
    assert list(frame["status"]) == ["ok"] * 4, frame["reason"].tolist()
    assert (frame["peak_device_mem_mb"] > 0).all()
    assert frame.iloc[1]["psnr_db"] > 30  # fp16
    assert (frame["device"] == "cuda:0").all()
