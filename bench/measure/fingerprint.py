"""Which machine a number comes from: a hardware fingerprint and its short hash, ``hw_id``.

Two "AMD EPYC" guests can differ in what decides the result: one has AVX2 only, the
other AVX-512 with VNNI and BF16 (bf16 runs natively on one and is emulated through
fp32 on the other, 16x apart). ``device_name`` stays the human-readable name; the
fingerprint lists what tells such machines apart, and ``hw_id`` (12 hex digits of a
SHA-256 of its hardware part) goes beside ``device_name`` in every row.

- ``hardware``: CPU model, logical and physical cores, the ISA features that change
  results (``ISA_FEATURES`` present in ``/proc/cpuinfo``'s flags, or ARM's
  ``Features``), memory size in GiB; on a CUDA run the GPU's name, memory, compute
  capability, driver and MIG profile. This part is hashed.
- ``software``: torch, its CUDA, ONNX Runtime and TensorRT versions. Not hashed: the
  same machine with a newer torch is the same hardware, and compare prints the
  version change as a difference of its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.core.device import Device, cpu_model_name

#: CPU flags that change what kernels run (x86: /proc/cpuinfo "flags"; ARM: "Features")
ISA_FEATURES: tuple[str, ...] = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "asimddp", "asimdhp", "bf16", "i8mm", "sve", "sve2", "sme", "sme2",
)  # fmt: skip
HW_ID_DIGITS = 12


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (the first processor's), from ``/proc/cpuinfo``; empty where unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def isa_features(flags: set[str] | None = None) -> list[str]:
    """The result-changing ISA features this CPU has, in ``ISA_FEATURES`` order."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in ISA_FEATURES if f in flags]


def _memory_gib() -> float:
    import psutil

    return round(psutil.virtual_memory().total / 2**30, 1)


@functools.cache
def cpu_hardware() -> dict[str, Any]:
    import psutil

    return {
        "cpu_model": cpu_model_name(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "isa": isa_features(),
        "memory_gib": _memory_gib(),
    }


def gpu_hardware(index: int) -> dict[str, Any]:
    """The GPU's identity: name, memory, compute capability, and (where NVML answers) driver and MIG profile."""
    import torch

    props = torch.cuda.get_device_properties(index)
    gpu: dict[str, Any] = {
        "gpu_name": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_driver": None,
        "mig_profile": None,
    }
    try:
        import pynvml

        from bench.measure.nvml import gpu_handle

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpu["gpu_driver"] = driver if isinstance(driver, str) else driver.decode()
        handle = gpu_handle(pynvml, index)
        try:
            if pynvml.nvmlDeviceIsMigDeviceHandle(handle):
                name = pynvml.nvmlDeviceGetName(handle)
                gpu["mig_profile"] = name if isinstance(name, str) else name.decode()
        except Exception:  # pre-MIG GPUs and old drivers do not answer
            pass
        pynvml.nvmlShutdown()
    except Exception:  # NVML missing or refused: the torch fields stand
        pass
    return gpu


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def software() -> dict[str, Any]:
    import torch

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "tensorrt": _version("tensorrt"),
    }


def hardware_fingerprint(device: Device | None = None) -> dict[str, Any]:
    """``{"hardware": {...}, "software": {...}, "hw_id": "..."}`` of this machine (and GPU, for a CUDA device)."""
    hardware = dict(cpu_hardware())
    if device is not None and device.is_cuda:
        hardware.update(gpu_hardware(device.index or 0))
    return {"hardware": hardware, "software": software(), "hw_id": hw_id(hardware)}


def hw_id(hardware: dict[str, Any]) -> str:
    """12 hex digits of SHA-256 over the hardware part, keys sorted: the same machine gives the same id."""
    text = json.dumps(hardware, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HW_ID_DIGITS]
