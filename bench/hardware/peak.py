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
    not exist on CPUs; int8 through onnxruntime's ``MatMulInteger`` (u8 x s8 -> s32, MLAS's
    kernels: VNNI or AMX where the CPU has them), not ``torch._int_mm``, which on CPU is a
    slow reference kernel (2.8 GOP/s against 82 GFLOP/s fp32 on the EPYC) bounding nothing
    an int8 pipeline runs. On the 2-core Xeon with AMX (2 threads, n = 2048) it reached
    3.2 TOP/s, against 0.33 TFLOP/s fp32 and 1.25 TFLOP/s bf16 from torch. Without
    onnxruntime, int8 is skipped with that reason.
  - CUDA: fp32 with TF32 off, tf32 (fp32 matmul with TF32 on), fp16, bf16 (compute
    capability >= 8.0), int8 through ``torch._int_mm``.
- Copy bandwidth: ``dst.copy_(src)`` of a large buffer (far beyond the last-level
  cache), counted as bytes read + bytes written over the best time.

Repeat until stable. One sweep gave 0.178, 0.077, 0.173 and 0.074 fp32 TFLOP/s in
four ``--refresh`` tries on this project's 2-core machine, and each was cached and
trusted, so rows read up to 170% of "peak". Each rate is now measured in windows:
window 1 is the size sweep (its best size), later windows re-time that size (a
copy window re-times the copy). The rate kept is the best window once the second
best is within ``AGREE_WITHIN`` (5%) of it; at least ``MIN_WINDOWS`` (3) windows
are taken and at most ``MAX_WINDOWS`` (6). Measured here (fp32, best of 5 calls
per window): windows at n = 512..2048 spread 1-4% on a quiet moment, and dipped
to 150 of 185 GFLOP/s while a neighbour ran; a whole ``bench peak --threads 1``
settled in 3 windows per rate (fp32 96.4, 96.3, 99.7 GFLOP/s; copy within 1%)
and took 6 s. Only the best two must agree, not any two: two windows that dip
together under a neighbour agree with each other, and would keep the dip. A rate whose best two never agree is recorded with
``stable[rate] = False`` and the peak is not cached (``refusal``): a ceiling
that cannot be reproduced is no ceiling.

Contention. The whole measurement is bracketed by
``bench.measure.contention.ContentionMeter`` (the cores are the torch threads on
CPU; one host thread and NVML's other processes on the GPU), preceded by an idle
look of ``PRECHECK_S`` so a busy machine is refused in half a second rather than
after the whole measurement. The reading is recorded in the result
(``other_cores``, ``host_busy_pct``, ``steal_pct``, ``load_avg_1m``,
``gpu_other_procs``, ``contended``); a contended measurement is not cached.
Where the kernel's counters cannot be read (not Linux) ``contended`` is None,
unknown, and the peak is cached as measured. On this project's shared 2-core
machine a 2-thread ``bench peak`` was refused (others used 0.60 cores, and 2
threads leave no spare core), while ``--threads 1`` beside the same neighbours
was not (one core spare).

Timing uses the project's timers (``bench.measure.clocks.timer_for``: perf_counter on
CPU, CUDA events on GPU). Results are cached as JSON under ``$GENBENCH_CACHE_DIR``
(default ``$XDG_CACHE_HOME/genbench`` or ``~/.cache/genbench``), keyed by the
hardware fingerprint's ``hw_id`` (two "AMD EPYC" guests with and without AVX-512
are two machines) and, on CPU, the torch thread count (the rate depends on it):
``peak-<device-name-slug>-<hw_id>-<threads>t.json`` (CUDA: no thread part). A
cache of another ``CACHE_VERSION`` is treated as absent.
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
from bench.core.errors import EnvironmentProblem
from bench.core.optional import missing
from bench.core.paths import cache_dir
from bench.core.text import slug
from bench.measure.clocks import Timer, timer_for
from bench.measure.contention import ContentionMeter, HostContention, gpu_process_reader, sample_contention

# 2: no CPU int8 rate (torch._int_mm there bounds nothing)
# 3: keyed by hw_id and threads; windows, stability and the contention reading recorded
# 4: a CPU int8 rate again, from onnxruntime's MatMulInteger (VNNI/AMX kernels), where onnxruntime is installed
CACHE_VERSION = 4
CPU_SIZES: tuple[int, ...] = (256, 512, 1024, 2048)
CUDA_SIZES: tuple[int, ...] = (2048, 4096, 8192)
CPU_COPY_MB = 256
CUDA_COPY_MB = 1024
DTYPES: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "int8")
#: a rate is stable once its second-best window is within this fraction of its best
AGREE_WITHIN = 0.05
MIN_WINDOWS = 3
MAX_WINDOWS = 6
#: seconds of idle watching before measuring: a machine already busy is refused at once
PRECHECK_S = 0.5
COPY = "copy"  # the key of the copy bandwidth in ``windows`` and ``stable``


@dataclass(frozen=True)
class PeakResult:
    """A device's measured ceilings. Rates in FLOP/s (ops/s for int8), bandwidth in bytes/s.

    The fields after ``details`` came with cache version 3 and default to "not
    recorded", so a result built by hand (tests, older callers) still constructs.
    """

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
    details: list[dict[str, Any]] = field(default_factory=list)  # dtype, n, rate per size of the sweep
    hw_id: str | None = None  # bench.measure.fingerprint's hash of the hardware
    windows: dict[str, list[float]] = field(default_factory=dict)  # dtype or "copy" -> rate of each window
    stable: dict[str, bool] = field(default_factory=dict)  # dtype or "copy" -> best two windows agreed
    # the contention reading over the measurement (bench.measure.contention); None: not read
    other_cores: float | None = None
    host_busy_pct: float | None = None
    steal_pct: float | None = None
    load_avg_1m: float | None = None
    gpu_other_procs: int | None = None
    contended: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {"cache_version": CACHE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeakResult:
        if data.get("cache_version") != CACHE_VERSION:
            raise ValueError(f"cache version {data.get('cache_version')!r} is not {CACHE_VERSION}")
        fields = {k: v for k, v in data.items() if k != "cache_version"}
        return cls(**fields)

    @property
    def date(self) -> str:
        """The day it was measured (``measured_at`` is an ISO timestamp)."""
        return self.measured_at[:10]

    @property
    def unstable(self) -> list[str]:
        """The rates whose best two windows never agreed."""
        return [what for what, ok in self.stable.items() if not ok]

    def contention(self) -> HostContention:
        """The recorded reading as bench.measure.contention reports it (for ``describe``)."""

        def nan(value: float | None) -> float:
            return math.nan if value is None else value

        return HostContention(
            host_busy_pct=nan(self.host_busy_pct),
            contended=self.contended,
            steal_pct=nan(self.steal_pct),
            load_avg_1m=nan(self.load_avg_1m),
            gpu_other_procs=self.gpu_other_procs,
            other_cores=nan(self.other_cores),
        )

    def condition(self) -> str:
        """How it was measured, in a phrase: 'stable, not contended (others used 0.02 cores ...)'."""
        if not self.stable:
            stability = "stability not recorded"
        elif self.unstable:
            stability = f"unstable: {', '.join(self.unstable)}"
        else:
            stability = "stable"
        if self.contended is None:
            quiet = "contention not recorded" if self.other_cores is None else "contention unknown"
        else:
            quiet = (
                "contended" if self.contended else "not contended"
            ) + f" ({self.contention().describe()})"
        return f"{stability}, {quiet}"


def spread(windows: list[float]) -> float:
    """How far apart the best two windows are, as a fraction of the best (0.12 = 12%); NaN with fewer than two."""
    if len(windows) < 2:
        return math.nan
    best, second = sorted(windows, reverse=True)[:2]
    return (best - second) / best if best > 0 else math.nan


def agreed_rate(windows: list[float]) -> float | None:
    """The best window once the second best is within ``AGREE_WITHIN`` of it, else None (module doc)."""
    gap = spread(windows)
    return max(windows) if gap <= AGREE_WITHIN else None  # NaN compares False: not agreed


def _unit(what: str) -> tuple[float, str]:
    if what == COPY:
        return 1e9, "GB/s"
    return 1e12, "TOP/s" if what == "int8" else "TFLOP/s"


def _rate_text(what: str, rate: float) -> str:
    """'fp32 0.178 TFLOP/s', 'copy 36.2 GB/s'."""
    scale, unit = _unit(what)
    return f"{what} {rate / scale:.3g} {unit}"


def _windows_text(what: str, windows: list[float]) -> str:
    """'fp32: 6 windows 0.178, 0.077, 0.173 TFLOP/s (best two 3% apart)'."""
    scale, unit = _unit(what)
    rates = ", ".join(f"{r / scale:.3g}" for r in windows)
    return f"{what}: {len(windows)} windows {rates} {unit} (best two {100 * spread(windows):.0f}% apart)"


def refusal(result: PeakResult) -> str | None:
    """Why this measurement may not be cached, in one line, or None when it may be.

    Contended (another process used the cores the measurement needed) or unstable
    (a rate whose best two windows never agreed within ``AGREE_WITHIN``).
    """
    if result.contended:
        reading = result.contention().describe()
        if result.load_avg_1m is not None:
            reading += f", load average {result.load_avg_1m:.2f}"
        return (
            f"peak of {result.device} not cached: the machine was busy while measuring ({reading}); "
            "re-measure when it is quiet" + (", or with fewer --threads" if result.threads > 1 else "")
        )
    if result.unstable:
        seen = "; ".join(_windows_text(what, result.windows[what]) for what in result.unstable)
        return (
            f"peak of {result.device} not cached: a rate did not stabilise (its best two windows never came "
            f"within {100 * AGREE_WITHIN:.0f}%): {seen}; re-measure on a quieter machine"
        )
    return None


def peak_note(peak: PeakResult | None, pct: float, dtype: str | None = None) -> str | None:
    """A row's note when its ``pct_of_peak`` is above 100%, else None (None without a peak or a %).

    Above 100% the denominator is wrong for that row, never the row right beyond the
    machine: the peak is torch.matmul's rate, which oneDNN's and ONNX Runtime's
    kernels can beat on a CPU, or it was measured low (busy, throttled, or an older
    software stack). The note names the rate (``dtype``: the one the row was divided
    by; otherwise every measured rate), when it was measured and how.
    """
    if peak is None or not pct > 100.0:  # NaN: no peak, no note
        return None
    if dtype is not None and dtype in peak.flops:
        rates = _rate_text(dtype, peak.flops[dtype])
    else:
        rates = ", ".join(_rate_text(d, r) for d, r in peak.flops.items()) or "no GEMM rate"
    return (
        f"pct_of_peak {pct:.0f}% is above the measured peak ({rates}, measured {peak.date}, "
        f"{peak.condition()}): that peak is torch.matmul's, which this row's kernels may beat, or it was "
        "measured low; re-measure with `python -m bench peak --refresh` on a quiet machine"
    )


# ----------------------------------------------------------------- cache
def cache_key(device: Device) -> tuple[str, int]:
    """What a cached peak is looked up by: this machine's ``hw_id`` and torch threads (0 on CUDA)."""
    from bench.measure.fingerprint import hardware_fingerprint

    return str(hardware_fingerprint(device)["hw_id"]), _current_threads(device)


def cache_path(name: str, hw_id: str | None, threads: int) -> Path:
    """The cache file of a peak of the device called ``name`` on hardware ``hw_id`` with ``threads``."""
    tail = f"-{threads}t" if threads else ""
    return cache_dir() / f"peak-{slug(name)}-{hw_id or 'no-hw-id'}{tail}.json"


def _read(path: Path) -> PeakResult | None:
    try:
        return PeakResult.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, json.JSONDecodeError):
        return None  # unreadable or old cache: treated as absent, re-measured on demand


def read_cached(name: str, hw_id: str | None = None, threads: int | None = None) -> PeakResult | None:
    """The cached peak of the device called ``name`` (a run's device_name), or None.

    With ``hw_id`` and ``threads``: the one measured on that hardware with that thread
    count (its file). Otherwise the newest of that name, narrowed to ``hw_id`` and to
    ``threads`` where given: a projection of a run whose machine may not be this one
    (bench.analysis.source warns when the thread count differs).
    """
    if hw_id is not None and threads is not None:
        cached = _read(cache_path(name, hw_id, threads))
        if cached is None or (cached.device_name, cached.hw_id, cached.threads) != (name, hw_id, threads):
            return None
        return cached
    found = [
        p
        for p in map(_read, sorted(cache_dir().glob("peak-*.json")))
        if p is not None
        and p.device_name == name
        and (hw_id is None or p.hw_id == hw_id)
        and (threads is None or p.threads == threads)
    ]
    return max(found, key=lambda p: p.measured_at) if found else None


def usable_peak(device: Device, name: str) -> PeakResult | None:
    """The device's cached measured peak, if one matches this machine (``hw_id``) and, on CPU, thread count.

    Measuring a peak takes minutes, so a run never does it implicitly; without a
    cached peak the `pct_of_peak` column stays empty.
    """
    hw_id, threads = cache_key(device)
    cached = read_cached(name, hw_id, threads)
    return cached if cached is not None and cached.kind == device.kind else None


def write_cache(result: PeakResult) -> Path:
    """Write ``result`` under its key; OSError (read-only cache folder) is the caller's to report."""
    path = cache_path(result.device_name, result.hw_id, result.threads)
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


def default_meter(device: Device) -> ContentionMeter:
    """The meter a peak measurement is bracketed by: torch's threads on CPU; on CUDA one host thread and NVML."""
    if not device.is_cuda:
        return ContentionMeter(_current_threads(device))
    from bench.measure.nvml import open_gpu

    nvml = open_gpu(device.index or 0)
    return ContentionMeter(1, gpu_processes=gpu_process_reader(nvml) if nvml is not None else None)


def measured_peak(
    device: Device | str,
    refresh: bool = False,
    meter: ContentionMeter | None = None,
    precheck_s: float | None = None,
    **measure_kwargs: Any,
) -> PeakResult:
    """The device's measured peak: from the cache when valid, else measured now and cached.

    ``refresh`` re-measures. ``meter`` replaces ``default_meter`` (tests inject its
    readings to simulate a busy machine); ``precheck_s`` seconds of idle watching come
    first (default ``PRECHECK_S``; 0: none). ``measure_kwargs`` (sizes, copy_mb, timer, ...) go to
    ``measure_peak``; tests use them to keep measurements small.

    Raises EnvironmentProblem, caching nothing, when the machine is busy before or
    during the measurement, or a rate did not stabilise (``refusal``).
    """
    dev = parse_device(device) if isinstance(device, str) else device
    check_available(dev)
    if not refresh:
        cached = usable_peak(dev, device_name(dev))
        if cached is not None:
            return cached
    meter = meter or default_meter(dev)
    precheck_s = PRECHECK_S if precheck_s is None else precheck_s
    if precheck_s > 0:
        before = sample_contention(meter, precheck_s)
        if before.contended:
            raise EnvironmentProblem(
                f"peak of {dev} not measured: the machine is busy ({before.describe()}, "
                f"load average {before.load_avg_1m:.2f}); measure when it is quiet"
                + (", or with fewer --threads" if not dev.is_cuda and _current_threads(dev) > 1 else "")
            )
    result = measure_peak(dev, meter=meter, **measure_kwargs)
    problem = refusal(result)
    if problem is not None:
        raise EnvironmentProblem(problem)
    try:
        write_cache(result)
    except OSError as exc:
        path = cache_path(result.device_name, result.hw_id, result.threads)
        raise EnvironmentProblem(f"cannot write the peak cache {path}: {exc.strerror or exc}") from None
    return result


# ----------------------------------------------------------------- measurement
def measure_peak(
    device: Device,
    sizes: tuple[int, ...] | None = None,
    copy_mb: int | None = None,
    reps: int = 5,
    max_seconds_per_size: float = 0.5,
    max_windows: int = MAX_WINDOWS,
    meter: ContentionMeter | None = None,
    timer: Timer | None = None,
) -> PeakResult:
    """Measure now (no cache), in windows until stable, with the contention reading (module doc).

    CPU and CUDA differ in dtypes, timers and flags. ``timer`` replaces the device's
    (tests inject one that reports chosen times); ``meter`` replaces ``default_meter``.
    The result is returned even when contended or unstable: ``refusal`` says so.
    """
    import torch

    meter = meter or default_meter(device)
    timer = timer or timer_for(device)
    rates = _Rates(max_windows=max(MIN_WINDOWS, max_windows))
    meter.start()
    if device.is_cuda:
        _measure_cuda(
            device, sizes or CUDA_SIZES, copy_mb or CUDA_COPY_MB, reps, max_seconds_per_size, timer, rates
        )
        memory = int(torch.cuda.get_device_properties(device.torch_name).total_memory)
    else:
        _measure_cpu(sizes or CPU_SIZES, copy_mb or CPU_COPY_MB, reps, max_seconds_per_size, timer, rates)
        import psutil

        memory = int(psutil.virtual_memory().total)
    reading = meter.stop()
    hw_id, threads = cache_key(device)
    return PeakResult(
        device=str(device),
        device_name=device_name(device),
        kind=device.kind,
        measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        torch_version=torch.__version__,
        threads=threads,
        memory_bytes=memory,
        flops=rates.flops,
        skipped=rates.skipped,
        copy_bytes_s=rates.copy_bytes_s,
        details=rates.details,
        hw_id=hw_id,
        windows=rates.windows,
        stable=rates.stable,
        other_cores=_or_none(reading.other_cores),
        host_busy_pct=_or_none(reading.host_busy_pct),
        steal_pct=_or_none(reading.steal_pct),
        load_avg_1m=_or_none(reading.load_avg_1m),
        gpu_other_procs=reading.gpu_other_procs,
        contended=reading.contended,
    )


def _or_none(value: float) -> float | None:
    """NaN (not read) as None: JSON has no NaN, and NaN != NaN would make equal results unequal."""
    return None if math.isnan(value) else float(value)


@dataclass
class _Rates:
    """What the measuring functions fill in: best rates, skip reasons, the sweep, each rate's windows."""

    max_windows: int
    flops: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    windows: dict[str, list[float]] = field(default_factory=dict)
    stable: dict[str, bool] = field(default_factory=dict)
    copy_bytes_s: float = 0.0

    def settle(self, what: str, first: float, window: Callable[[], float]) -> float:
        """Take windows after ``first`` until the best two agree (at least MIN_WINDOWS, at most max_windows).

        Returns the rate kept: the agreed best, or (unstable) the best seen.
        """
        seen = [first]
        while len(seen) < self.max_windows and (len(seen) < MIN_WINDOWS or agreed_rate(seen) is None):
            seen.append(window())
        agreed = agreed_rate(seen)
        self.windows[what] = seen
        self.stable[what] = agreed is not None
        return max(seen) if agreed is None else agreed


def _best_ms(run: Callable[[], Any], timer: Timer, reps: int, max_seconds: float) -> float:
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


def _gemm_rates(
    dtypes: dict[str, Callable[[int], Callable[[], Any]]],
    sizes: tuple[int, ...],
    timer: Timer,
    reps: int,
    max_seconds: float,
    rates: _Rates,
) -> None:
    """Each dtype's rate (``_gemm_rate``), or the reason it did not run."""
    for dtype, make in dtypes.items():
        try:
            rates.flops[dtype] = _gemm_rate(dtype, make, sizes, timer, reps, max_seconds, rates)
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            rates.skipped[dtype] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            rates.windows.pop(dtype, None)
            rates.stable.pop(dtype, None)


def _gemm_rate(
    dtype: str,
    make: Callable[[int], Callable[[], Any]],
    sizes: tuple[int, ...],
    timer: Timer,
    reps: int,
    max_seconds: float,
    rates: _Rates,
) -> float:
    """``make(n)`` builds the operands and returns the call to time.

    Sizes go smallest first; a size whose time, extrapolated as n^3 from the
    previous one, would exceed ``max_seconds`` is not run, nor any larger one.
    The sweep is window 1; later windows re-time its best size (``_Rates.settle``).
    """
    best_n, best_rate = 0, 0.0
    last: tuple[int, float] | None = None
    for n in sorted(sizes):
        if last is not None and last[1] * (n / last[0]) ** 3 > max_seconds * 1e3:
            break  # a slow kernel (bf16 on AVX2 runs at ~1 GFLOP/s): larger sizes would take minutes
        ms = _best_ms(make(n), timer, reps, max_seconds)
        rate = 2.0 * n**3 / (ms / 1e3)
        rates.details.append({"dtype": dtype, "n": n, "best_ms": ms, "rate": rate})
        if rate > best_rate:
            best_n, best_rate = n, rate
        last = (n, ms)
    run = make(best_n)

    def window() -> float:
        return 2.0 * best_n**3 / (_best_ms(run, timer, reps, max_seconds) / 1e3)

    return rates.settle(dtype, best_rate, window)


def _copy_rate(
    make_buffers: Callable[[], tuple[Any, Any]], timer: Timer, reps: int, max_seconds: float, rates: _Rates
) -> None:
    src, dst = make_buffers()
    moved = 2.0 * src.numel() * src.element_size()

    def window() -> float:
        return moved / (_best_ms(lambda: dst.copy_(src), timer, reps, max_seconds) / 1e3)

    rates.copy_bytes_s = rates.settle(COPY, window(), window)


def _measure_cpu(
    sizes: tuple[int, ...], copy_mb: int, reps: int, max_seconds: float, timer: Timer, rates: _Rates
) -> None:
    import torch

    gen = torch.Generator().manual_seed(0)

    def float_mm(dtype: torch.dtype) -> Callable[[int], Callable[[], Any]]:
        def make(n: int) -> Callable[[], Any]:
            a = torch.randn(n, n, generator=gen).to(dtype)
            b = torch.randn(n, n, generator=gen).to(dtype)
            out = torch.empty(n, n, dtype=dtype)
            return lambda: torch.matmul(a, b, out=out)

        return make

    rates.skipped["tf32"] = "TF32 is a GPU tensor-core format; CPUs have no TF32"
    dtypes: dict[str, Callable[[int], Callable[[], Any]]] = {"fp32": float_mm(torch.float32)}
    fp16_reason = supports_dtype(Device("cpu"), "fp16")
    if fp16_reason is None:
        dtypes["fp16"] = float_mm(torch.float16)
    else:
        rates.skipped["fp16"] = fp16_reason
    dtypes["bf16"] = float_mm(torch.bfloat16)
    # torch._int_mm on CPU is a reference kernel (2.8 GOP/s against 82 GFLOP/s for fp32 on the EPYC):
    # the int8 rate is onnxruntime's MatMulInteger, the kernels its int8 pipelines run.
    unavailable = missing("onnx", "onnxruntime")
    if unavailable is None:
        dtypes["int8"] = ort_int8_mm(torch.get_num_threads())
    else:
        rates.skipped["int8"] = f"the CPU int8 GEMM is measured through onnxruntime: {unavailable}"
    with torch.inference_mode():
        _gemm_rates(dtypes, sizes, timer, reps, max_seconds, rates)
        elems = copy_mb * 2**20 // 4

        def buffers() -> tuple[Any, Any]:
            src = torch.ones(elems, dtype=torch.float32)
            return src, torch.empty_like(src)

        _copy_rate(buffers, timer, reps, max_seconds, rates)


def ort_int8_mm(threads: int) -> Callable[[int], Callable[[], Any]]:
    """``make(n)`` for an n x n x n u8 x s8 -> s32 ``MatMulInteger`` on onnxruntime's CPU EP (B a constant)."""

    def make(n: int) -> Callable[[], Any]:
        try:
            return _ort_int8_session(n, threads)
        except Exception as exc:  # an onnx/onnxruntime mismatch: int8 is skipped with why, the rest measured
            raise RuntimeError(f"onnxruntime MatMulInteger could not be set up: {exc}") from exc

    return make


def _ort_int8_session(n: int, threads: int) -> Callable[[], Any]:
    """One MatMulInteger session and the call that runs it (the body of ``ort_int8_mm``'s ``make``)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from bench.runtimes.ort import session_options

    rng = np.random.default_rng(0)
    b = rng.integers(-64, 64, (n, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "int8_gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime >= 1.14 reads
    options = session_options(ort)
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 128, (n, n), dtype=np.uint8)}

    def run() -> Any:
        try:
            return session.run(None, feed)
        except Exception as exc:  # onnxruntime's own errors do not derive from RuntimeError
            raise RuntimeError(f"onnxruntime MatMulInteger failed: {exc}") from exc

    return run


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
    device: Device,
    sizes: tuple[int, ...],
    copy_mb: int,
    reps: int,
    max_seconds: float,
    timer: Timer,
    rates: _Rates,
) -> None:
    """CUDA path: events on the current stream (timer_for), operands resident on the GPU.

    fp32 is measured with TF32 off (the CUDA-core rate) and tf32 as an fp32
    matmul with TF32 on; both restore the caller's TF32 flags afterwards.
    """
    import torch

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

    skipped = rates.skipped
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
    with torch.inference_mode(), torch.cuda.device(where):
        _gemm_rates(dtypes, sizes, timer, reps, max_seconds, rates)
        elems = copy_mb * 2**20 // 4

        def buffers() -> tuple[Any, Any]:
            src = torch.ones(elems, dtype=torch.float32, device=where)
            return src, torch.empty_like(src)

        _copy_rate(buffers, timer, reps, max_seconds, rates)
        torch.cuda.empty_cache()
