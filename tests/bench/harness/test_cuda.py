"""The CUDA path of the runner, on a real GPU (skipped with a reason elsewhere)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from bench.core.device import Device
from bench.measure.clocks import EventTimer, timer_for

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


def test_cuda_oom_is_a_row_and_the_next_cell_runs(run_matrix, test_passes) -> None:
    frame = run_matrix(models=("dcgan",), pipelines=("test-hog", "fp32"), batch_sizes=(1,), device="cuda:0")
    assert list(frame["status"]) == ["oom", "ok"], frame["reason"].tolist()
    assert "out of memory" in frame.iloc[0]["reason"].lower()


def test_cuda_rows_carry_nvml_energy_clocks_and_memory(run_matrix) -> None:
    pytest.importorskip("pynvml")
    frame = run_matrix(
        models=("unet",), pipelines=("fp32",), batch_sizes=(8,), device="cuda:0", time_budget_s=1.0
    )
    row = frame.iloc[0]
    assert row["status"] == "ok", row["reason"]
    assert row["energy_j_per_item"] > 0 and 10 < row["avg_power_w"] < 2000
    assert "energy=" in row["notes"]
    assert row["sm_clock_mhz_start"] > 0 and row["gpu_temp_c_end"] > 0
    assert row["peak_device_reserved_mb"] >= row["peak_device_mem_mb"] > 0
    if not math.isnan(row["nvml_process_mem_mb"]):  # NaN in containers without the host PID namespace
        assert row["nvml_process_mem_mb"] >= row["peak_device_mem_mb"]


def test_cuda_transfers_are_reported_apart_and_included_on_request(run_matrix) -> None:
    frame = run_matrix(models=("vae",), pipelines=("fp32",), batch_sizes=(4,), device="cuda:0")
    assert frame.iloc[0]["transfer_h2d_ms"] > 0 and frame.iloc[0]["transfer_d2h_ms"] > 0
    assert not frame.iloc[0]["includes_transfers"]
    with_copies = run_matrix(
        models=("vae",), pipelines=("fp32",), batch_sizes=(4,), device="cuda:0", include_transfers=True
    )
    assert with_copies.iloc[0]["includes_transfers"]
    assert with_copies.iloc[0]["status"] == "ok", with_copies.iloc[0]["reason"]


def test_cuda_graph_and_compile_pipelines_match_the_reference(run_matrix) -> None:
    frame = run_matrix(
        models=("dcgan",),
        pipelines=("fp32", "cudagraph", "compile", "compile:reduce-overhead", "fp16+cudagraph"),
        batch_sizes=(1, 4),
        device="cuda:0",
    )
    assert (frame["status"] == "ok").all(), frame["reason"].tolist()
    fp32_like = frame[~frame["pipeline"].str.startswith("fp16")]
    assert (fp32_like["psnr_db"] > 40).all(), fp32_like[["pipeline", "psnr_db"]]  # TF32 convolutions
    assert (frame[frame["pipeline"] == "fp16+cudagraph"]["psnr_db"] > 30).all()


def test_cuda_sparse24_runs_or_says_why_not(run_matrix) -> None:
    frame = run_matrix(
        models=("unet",), pipelines=("fp16+sparse24",), batch_sizes=(2,), device="cuda:0", size="small"
    )
    row = frame.iloc[0]
    assert row["status"] in ("ok", "skipped"), row["reason"]
    if row["status"] == "ok":
        assert "2:4 sparse" in row["notes"] and row["psnr_db"] > 10
    else:
        assert "sparse24" in row["reason"] or "2:4" in row["reason"]


def test_cuda_ort_runs_on_the_cuda_provider_or_is_skipped(run_matrix) -> None:
    ort = pytest.importorskip("onnxruntime")
    frame = run_matrix(models=("dcgan",), pipelines=("ort",), batch_sizes=(2,), device="cuda:0")
    row = frame.iloc[0]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert row["status"] == "ok" and "CUDAExecutionProvider" in row["runtime"], row["reason"]
        assert math.isnan(row["peak_device_mem_mb"])  # not torch's memory: see nvml_process_mem_mb
    else:
        assert row["status"] == "skipped" and "CUDA" in row["reason"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="renumbering needs two GPUs to show")
def test_nvml_handle_is_the_gpu_torch_calls_cuda0_under_cuda_visible_devices() -> None:
    pytest.importorskip("pynvml")
    last = torch.cuda.device_count() - 1
    code = (  # NVML ignores CUDA_VISIBLE_DEVICES: its index `last` is the physical GPU torch now calls cuda:0
        "import pynvml; from bench.measure.nvml import gpu_handle; pynvml.nvmlInit(); "
        f"mine = pynvml.nvmlDeviceGetUUID(gpu_handle(pynvml, 0)); "
        f"physical = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex({last})); "
        "assert mine == physical, (mine, physical); print('ok')"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(last)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
