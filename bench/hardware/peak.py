"""Measured peak of a device: the best dense GEMM rate per dtype and the copy bandwidth.

Vendor peaks are what a part could do at its boost clock with perfect kernels;
a measured peak is what this software stack actually reaches on this machine.
It is the denominator of "% of peak" for a device with no catalogue entry (this
development machine's KVM-hidden "AMD EPYC", for one), and the ceiling used when
a run on such a device is projected elsewhere.

What is measured (``measure_peak``):

- GEMM: ``torch.matmul`` of square n x n matrices at a few sizes, each timed
  a few times; the rate is ``2 n^3 / best time`` and the best over sizes is kept
  (small sizes do not fill the machine; big ones can spill caches: the best of
  a few sizes is the achievable rate). int8 uses ``torch._int_mm`` (int8 x int8
  -> int32), counted as ops. A dtype that does not run is recorded with the reason.
  - CPU: fp32, bf16 (and fp16 only where the CPU computes it natively); tf32 does
    not exist on CPUs; int8 is not measured on CPU (``torch._int_mm`` there is a slow
    reference kernel, ~30x below fp32 here, so it would bound nothing an int8 pipeline runs).
  - CUDA: fp32 with TF32 off, tf32 (fp32 matmul with TF32 on), fp16, bf16 (compute
    capability >= 8.0), int8 through ``torch._int_mm``.
- Copy bandwidth: ``dst.copy_(src)`` of a large buffer (far beyond the last-level
  cache), counted as bytes read + bytes written over the best time.

Timing uses the project's timers (``bench.measure.clocks.timer_for``: perf_counter on
CPU, CUDA events on GPU). Results are cached as JSON per device name under
``$GENBENCH_CACHE_DIR`` (default ``$XDG_CACHE_HOME/genbench`` or
``~/.cache/genbench``), file ``peak-<device-name-slug>.json``; a cached CPU
result measured with another thread count is stale and re-measured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.core.device import Device, check_available, device_name, parse_device, supports_dtype
from bench.core.paths import cache_dir
from bench.core.text import slug
from bench.measure.clocks import timer_for

CACHE_VERSION = 2  # 2: no CPU int8 rate (torch._int_mm there bounds nothing)
CPU_SIZES: tuple[int, ...] = (256, 512, 1024, 2048)
CUDA_SIZES: tuple[int, ...] = (2048, 4096, 8192)
CPU_COPY_MB = 256
CUDA_COPY_MB = 1024
DTYPES: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class PeakResult:
    """A device's measured ceilings. Rates in FLOP/s (ops/s for int8), bandwidth in bytes/s."""

    device: str  # "cpu", "cuda:0"
    device_name: str
    kind: str  # "cpu" | "cuda"
    measured_at: str
    torch_version: str
    threads: int  # torch threads on CPU (the rate depends on it); 0 on CUDA
    memory_bytes: int  # host RAM on CPU, device memory on CUDA
    flops: dict[str, float]  # dtype -> best rate
    skipped: dict[str, str]  # dtype -> why it was not measured
    copy_bytes_s: float
    details: list[dict[str, Any]] = field(default_factory=list)  # dtype, n, rate per size

    def to_json(self) -> dict[str, Any]:
        return {"cache_version": CACHE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeakResult:
        if data.get("cache_version") != CACHE_VERSION:
            raise ValueError(f"cache version {data.get('cache_version')!r} is not {CACHE_VERSION}")
        fields = {k: v for k, v in data.items() if k != "cache_version"}
        return cls(**fields)


# ----------------------------------------------------------------- cache
def cache_path(name: str) -> Path:
    return cache_dir() / f"peak-{slug(name)}.json"


def read_cached(name: str) -> PeakResult | None:
    """The cached peak of the device called ``name`` (a run's device_name), or None."""
    path = cache_path(name)
    if not path.is_file():
        return None
    try:
        return PeakResult.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, json.JSONDecodeError):
        return None  # unreadable or old cache: treated as absent, re-measured on demand


def usable_peak(device: Device, name: str) -> PeakResult | None:
    """The device's cached measured peak, if one matches this process (a CPU peak: the same thread count).

    Measuring a peak takes minutes, so a run never does it implicitly; without a
    cached peak the `pct_of_peak` column stays empty.
    """
    cached = read_cached(name)
    if cached is None or cached.kind != device.kind:
        return None
    if cached.threads != _current_threads(device):
        return None
    return cached


def write_cache(result: PeakResult) -> Path:
    path = cache_path(result.device_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=2))
    os.replace(tmp, path)
    return path


def _current_threads(device: Device) -> int:
    if device.is_cuda:
        return 0
    import torch

    return torch.get_num_threads()


def measured_peak(device: Device | str, refresh: bool = False, **measure_kwargs: Any) -> PeakResult:
    """The device's measured peak: from the cache when valid, else measured now and cached.

    ``refresh`` re-measures. ``measure_kwargs`` (sizes, copy_mb, ...) go to
    ``measure_peak``; tests use them to keep measurements small.
    """
    dev = parse_device(device) if isinstance(device, str) else device
    check_available(dev)
    name = device_name(dev)
    if not refresh:
        cached = read_cached(name)
        if cached is not None and cached.kind == dev.kind and cached.threads == _current_threads(dev):
            return cached
    result = measure_peak(dev, **measure_kwargs)
    write_cache(result)
    return result


# ----------------------------------------------------------------- measurement
def measure_peak(
    device: Device,
    sizes: tuple[int, ...] | None = None,
    copy_mb: int | None = None,
    reps: int = 5,
    max_seconds_per_size: float = 0.5,
) -> PeakResult:
    """Measure now (no cache). CPU and CUDA differ in dtypes, timers and flags; see the module doc."""
    import torch

    if device.is_cuda:
        flops, skipped, details, copy = _measure_cuda(
            device, sizes or CUDA_SIZES, copy_mb or CUDA_COPY_MB, reps, max_seconds_per_size
        )
        memory = int(torch.cuda.get_device_properties(device.torch_name).total_memory)
    else:
        flops, skipped, details, copy = _measure_cpu(
            sizes or CPU_SIZES, copy_mb or CPU_COPY_MB, reps, max_seconds_per_size
        )
        import psutil

        memory = int(psutil.virtual_memory().total)
    return PeakResult(
        device=str(device),
        device_name=device_name(device),
        kind=device.kind,
        measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        torch_version=torch.__version__,
        threads=_current_threads(device),
        memory_bytes=memory,
        flops=flops,
        skipped=skipped,
        copy_bytes_s=copy,
        details=details,
    )


def _best_ms(run: Callable[[], Any], timer: Any, reps: int, max_seconds: float) -> float:
    """Best of up to ``reps`` timed runs after one warm-up, stopping early past ``max_seconds``."""
    run()  # warm-up: first-call costs (allocation, kernel selection) are not the steady rate
    best = math.inf
    spent_ms = 0.0
    for i in range(reps):
        ms = timer.measure(run)
        best = min(best, ms)
        spent_ms += ms
        if i >= 1 and spent_ms > max_seconds * 1e3:
            break
    return best


_Measured = tuple[dict[str, float], dict[str, str], list[dict[str, Any]], float]


def _gemm_rates(
    dtypes: dict[str, Callable[[int], Callable[[], Any]]],
    sizes: tuple[int, ...],
    timer: Any,
    reps: int,
    max_seconds: float,
    flops: dict[str, float],
    skipped: dict[str, str],
    details: list[dict[str, Any]],
) -> None:
    """For each dtype, ``make(n)`` builds the operands and returns the call to time.

    Sizes go smallest first; a size whose time, extrapolated as n^3 from the
    previous one, would exceed ``max_seconds`` is not run, nor any larger one.
    """
    for dtype, make in dtypes.items():
        best = 0.0
        last: tuple[int, float] | None = None
        try:
            for n in sorted(sizes):
                if last is not None and last[1] * (n / last[0]) ** 3 > max_seconds * 1e3:
                    break  # a slow kernel (bf16 on AVX2 runs at ~1 GFLOP/s): larger sizes would take minutes
                run = make(n)
                ms = _best_ms(run, timer, reps, max_seconds)
                rate = 2.0 * n**3 / (ms / 1e3)
                details.append({"dtype": dtype, "n": n, "best_ms": ms, "rate": rate})
                best = max(best, rate)
                last = (n, ms)
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            skipped[dtype] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            continue
        flops[dtype] = best


def _copy_rate(
    make_buffers: Callable[[], tuple[Any, Any]], timer: Any, reps: int, max_seconds: float
) -> float:
    src, dst = make_buffers()
    ms = _best_ms(lambda: dst.copy_(src), timer, reps, max_seconds)
    return 2.0 * src.numel() * src.element_size() / (ms / 1e3)


def _measure_cpu(sizes: tuple[int, ...], copy_mb: int, reps: int, max_seconds: float) -> _Measured:
    import torch

    timer = timer_for(Device("cpu"))
    gen = torch.Generator().manual_seed(0)

    def float_mm(dtype: torch.dtype) -> Callable[[int], Callable[[], Any]]:
        def make(n: int) -> Callable[[], Any]:
            a = torch.randn(n, n, generator=gen).to(dtype)
            b = torch.randn(n, n, generator=gen).to(dtype)
            out = torch.empty(n, n, dtype=dtype)
            return lambda: torch.matmul(a, b, out=out)

        return make

    skipped = {"tf32": "TF32 is a GPU tensor-core format; CPUs have no TF32"}
    dtypes: dict[str, Callable[[int], Callable[[], Any]]] = {"fp32": float_mm(torch.float32)}
    fp16_reason = supports_dtype(Device("cpu"), "fp16")
    if fp16_reason is None:
        dtypes["fp16"] = float_mm(torch.float16)
    else:
        skipped["fp16"] = fp16_reason
    dtypes["bf16"] = float_mm(torch.bfloat16)
    # torch._int_mm on CPU is a reference kernel: measured here at 2.8 GOP/s against 82 GFLOP/s for fp32,
    # while ONNX Runtime's int8 kernels ran faster than fp32. It bounds nothing a pipeline uses.
    skipped["int8"] = (
        "no CPU int8 GEMM to measure: torch._int_mm on CPU is a slow reference kernel, not what int8 pipelines run"
    )
    flops: dict[str, float] = {}
    details: list[dict[str, Any]] = []
    with torch.inference_mode():
        _gemm_rates(dtypes, sizes, timer, reps, max_seconds, flops, skipped, details)
        elems = copy_mb * 2**20 // 4

        def buffers() -> tuple[Any, Any]:
            src = torch.ones(elems, dtype=torch.float32)
            return src, torch.empty_like(src)

        copy = _copy_rate(buffers, timer, reps, max_seconds)
    return flops, skipped, details, copy


# ----------------------------------------------------------------- CUDA (not runnable on a CPU-only host)
@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """Set TF32 for matmul and cuDNN for the block, restoring the caller's settings after."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _measure_cuda(
    device: Device, sizes: tuple[int, ...], copy_mb: int, reps: int, max_seconds: float
) -> _Measured:
    """CUDA path: events on the current stream (timer_for), operands resident on the GPU.

    fp32 is measured with TF32 off (the CUDA-core rate) and tf32 as an fp32
    matmul with TF32 on; both restore the caller's TF32 flags afterwards.
    """
    import torch

    timer = timer_for(device)
    where = torch.device(device.torch_name)
    gen = torch.Generator(device=where).manual_seed(0)

    def float_mm(dtype: torch.dtype, tf32: bool) -> Callable[[int], Callable[[], Any]]:
        def make(n: int) -> Callable[[], Any]:
            a = torch.randn(n, n, device=where, dtype=torch.float32, generator=gen).to(dtype)
            b = torch.randn(n, n, device=where, dtype=torch.float32, generator=gen).to(dtype)
            out = torch.empty(n, n, device=where, dtype=dtype)

            def run() -> Any:
                with _tf32(tf32):
                    return torch.matmul(a, b, out=out)

            return run

        return make

    def int_mm(n: int) -> Callable[[], Any]:
        a = torch.randint(-128, 128, (n, n), device=where, dtype=torch.int8, generator=gen)
        b = torch.randint(-128, 128, (n, n), device=where, dtype=torch.int8, generator=gen)
        return lambda: torch._int_mm(a, b)

    skipped: dict[str, str] = {}
    dtypes: dict[str, Callable[[int], Callable[[], Any]]] = {
        "fp32": float_mm(torch.float32, tf32=False),
        "tf32": float_mm(torch.float32, tf32=True),
        "fp16": float_mm(torch.float16, tf32=False),
    }
    bf16_reason = supports_dtype(device, "bf16")
    if bf16_reason is None:
        dtypes["bf16"] = float_mm(torch.bfloat16, tf32=False)
    else:
        skipped["bf16"] = bf16_reason
    major, _minor = torch.cuda.get_device_capability(where)
    if major >= 8 or (major == 7 and _minor >= 5):
        dtypes["int8"] = int_mm
    else:
        skipped["int8"] = "torch._int_mm needs int8 tensor cores (compute capability >= 7.5)"
    if major < 8:
        skipped["tf32"] = "TF32 needs compute capability >= 8.0"
        del dtypes["tf32"]
    flops: dict[str, float] = {}
    details: list[dict[str, Any]] = []
    with torch.inference_mode(), torch.cuda.device(where):
        _gemm_rates(dtypes, sizes, timer, reps, max_seconds, flops, skipped, details)
        elems = copy_mb * 2**20 // 4

        def buffers() -> tuple[Any, Any]:
            src = torch.ones(elems, dtype=torch.float32, device=where)
            return src, torch.empty_like(src)

        copy = _copy_rate(buffers, timer, reps, max_seconds)
        torch.cuda.empty_cache()
    return flops, skipped, details, copy
