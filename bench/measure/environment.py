"""The environment a run happened in, written to env.json beside its tables."""

from __future__ import annotations

import datetime as dt
import functools
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.measure.fingerprint import cpu_hardware
from bench.measure.nvml import gpu_handle

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRACKED_PACKAGES = (
    "torch", "numpy", "pandas", "pyarrow", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript",
    "tensorrt", "torch-pruning", "nvidia-ml-py", "psutil", "rich", "openvino", "nncf", "torchao", "ray",
)  # fmt: skip


@functools.cache
def git_sha() -> str:
    """The project's commit, with "+dirty" when the work tree has changes; "unknown" outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_info() -> dict[str, Any]:
    """env.json's ``cpu``: the fingerprint's CPU facts under the names older runs use, and torch's view."""
    import torch

    hardware = cpu_hardware()
    return {
        "model": hardware["cpu_model"],
        "machine": hardware["machine"],
        "logical_cores": hardware["logical_cores"],
        "physical_cores": hardware["physical_cores"],
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_gb": hardware["memory_gib"],
    }


def gpu_info() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append(
            {
                "index": i,
                "name": props.name,
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1),
                "multiprocessors": props.multi_processor_count,
            }
        )
    try:  # driver version and clocks, where NVML is installed
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        for gpu in gpus:
            handle = gpu_handle(pynvml, gpu["index"])
            gpu["driver"] = driver if isinstance(driver, str) else driver.decode()
            gpu["max_sm_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
            gpu["power_limit_w"] = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000
        pynvml.nvmlShutdown()
    except Exception:  # NVML missing or not permitted: the torch fields above still stand
        pass
    return gpus


def capture_environment() -> dict[str, Any]:
    import torch

    return {
        "captured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "torch_cuda": torch.version.cuda,
        # What fp32 means on a GPU: TF32 convolutions (cuDNN, on by default) and matmuls (off by default).
        "torch_backends": {
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
        "cpu": cpu_info(),
        "gpus": gpu_info(),
        "git_sha": git_sha(),
        "argv": sys.argv,
    }
