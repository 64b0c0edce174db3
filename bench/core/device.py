"""Device strings parsed in one pure function, plus what a device can do.

Parsing is kept free of torch calls so it is trivially testable and so a typo
is an error before any model is built (optimum-benchmark's `cuda:0` bug came
from parsing device strings in several places).
"""

from __future__ import annotations

import functools
import platform
import re
from dataclasses import dataclass
from pathlib import Path

_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` is "cpu" or "cuda"; ``index`` is set for CUDA."""

    kind: str
    index: int | None = None

    @property
    def torch_name(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index or 0}"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return self.torch_name


def parse_device(text: str) -> Device:
    """Parse "cpu", "cuda" or "cuda:N" (case and surrounding spaces ignored).

    "cpu:0" is accepted as "cpu". Anything else raises ValueError naming the forms accepted.
    """
    match = _DEVICE_RE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"unknown device {text!r}; use cpu, cuda or cuda:N")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return Device("cpu")
    return Device("cuda", int(index) if index is not None else 0)


def check_available(device: Device) -> None:
    """Raise ValueError if the device cannot be used in this process."""
    if not device.is_cuda:
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"{device} requested but CUDA is not available here (torch {torch.__version__})")
    count = torch.cuda.device_count()
    assert device.index is not None
    if device.index >= count:
        raise ValueError(f"{device} requested but only {count} CUDA device(s) are visible")


def best_available() -> Device:
    """The default device: the first GPU when there is one, else the CPU."""
    import torch

    return Device("cuda", 0) if torch.cuda.is_available() else Device("cpu")


def synchronize(device: Device) -> None:
    """Wait for queued work on the device; a no-op on CPU."""
    if device.is_cuda:
        import torch

        torch.cuda.synchronize(device.torch_name)


def device_name(device: Device) -> str:
    """Human-readable model name of the device (CPU model string or GPU name)."""
    if device.is_cuda:
        import torch

        return torch.cuda.get_device_name(device.torch_name)
    return cpu_model_name()


@functools.cache
def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else platform's best guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def emulated_dtype(device: Device, dtype_name: str) -> str | None:
    """Why ``dtype_name`` runs but only emulated on this device (None when it is native).

    On a CPU without AVX512-BF16 or AMX, torch computes bf16 by converting through
    fp32, measured here at ~1 GFLOP/s against ~110 GFLOP/s for fp32 GEMM on AVX2.
    """
    if device.is_cuda or dtype_name != "bf16":
        return None
    import torch

    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return None
    return "this CPU has no bf16 instructions (no AVX512-BF16 or AMX); torch emulates bf16 through fp32"


def supports_dtype(device: Device, dtype_name: str) -> str | None:
    """None if the device computes ``dtype_name`` natively, else the reason it does not.

    On CPU, fp16 without AVX512-FP16/AMX-FP16 is emulated op by op at a large loss,
    so it is reported as not applicable rather than timed as if it were a real option.
    bf16 runs on any x86 CPU in torch (converted through fp32 on AVX2), so it is measured.
    """
    import torch

    if device.is_cuda:
        major, minor = torch.cuda.get_device_capability(device.torch_name)
        if dtype_name == "bf16" and major < 8:
            return f"bf16 needs compute capability >= 8.0; this GPU is {major}.{minor}"
        return None
    if dtype_name == "fp16":
        has_fp16 = (
            torch.cpu._is_amx_fp16_supported()
            or getattr(torch.cpu, "_is_avx512_fp16_supported", lambda: False)()
        )
        if not has_fp16:
            return (
                "this CPU has no native fp16 arithmetic (no AVX512-FP16 or AMX-FP16); torch would emulate it"
            )
    return None
