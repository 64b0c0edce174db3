"""Was the machine ours? What else used the CPU (and the GPU) while a cell was timed.

A latency measured while another process held the cores is that process's number,
not the model's: on this project's 2-core machines a busy neighbour turned dcgan's
6.4 ms into 193 ms with a +-3% interval that looked certain. So every timed region
is bracketed by two readings of the kernel's counters:

- ``/proc/stat``'s first line: CPU time of every process on the machine (busy:
  user + nice + system + irq + softirq; ``steal``: time the hypervisor gave our
  virtual CPUs to another guest), in clock ticks;
- the measuring process's own CPU time (``psutil.Process().cpu_times()``: user +
  system of all its threads, the RSS sampler's included).

Other processes' CPU time is the difference, less the counters' rounding (a tick per
core and per own counter), over the region's wall time:
``other_cores`` (0.5 = half a core busy all along). ``host_busy_pct`` states it as
a % of the cores the cell uses (its intra-op threads), the number the issue
reports; ``contended`` is the verdict:

    contended = other_cores + steal_cores > spare_cores + CONTENDED_CORES

where ``spare_cores`` is the machine's logical cores minus the cell's threads
(others may run there without touching the cell) and ``CONTENDED_CORES`` = 0.1,
a tenth of one core. On a 2-core machine running 2 threads there are no spare
cores, so a neighbour using 10% of one core marks the cell. The 1-minute load
average is recorded beside it for the reader, not used (it lags by a minute).

On a GPU, NVML's list of compute processes on the same device, less this
process, is ``gpu_other_procs``; a cell sharing its GPU with another process is
contended too.

Readings come through injectable callables so that tests (and ``bench peak``'s
refusal) can simulate a busy machine without burning a core.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.core.columns import RowPart

#: a cell is contended when others use more than the spare cores plus this much of one core
CONTENDED_CORES = 0.1
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class HostCpu:
    """The machine's CPU time so far, in seconds summed over all cores (``/proc/stat``)."""

    busy_s: float
    steal_s: float


def read_host_cpu() -> HostCpu | None:
    """All processes' CPU time from ``/proc/stat``; None where there is none (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    ticks += [0] * (8 - len(ticks))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    # guest and guest_nice (fields 9, 10) are already counted in user and nice
    return HostCpu(busy_s=(user + nice + system + irq + softirq) / _TICKS_PER_S, steal_s=steal / _TICKS_PER_S)


def read_own_cpu_s() -> float:
    """CPU seconds this process has used, every thread included."""
    import psutil

    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def read_load_1m() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


@dataclass(frozen=True)
class HostContention(RowPart):
    """What else ran during a cell's timed region (module docstring); NaN/None where not measured."""

    host_busy_pct: float = math.nan
    contended: bool | None = None
    steal_pct: float = math.nan
    load_avg_1m: float = math.nan
    gpu_other_procs: int | None = None
    other_cores: float = math.nan  # not a column: the raw reading the verdict used

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "host_busy_pct", "contended", "steal_pct", "load_avg_1m", "gpu_other_procs",
    )  # fmt: skip

    def describe(self) -> str:
        """One phrase for notes and console lines: 'others used 0.84 cores (42% of the cell's 2), steal 0%'."""
        parts = [f"others used {self.other_cores:.2f} cores ({self.host_busy_pct:.0f}% of the cell's cores)"]
        if not math.isnan(self.steal_pct) and self.steal_pct > 0:
            parts.append(f"steal {self.steal_pct:.0f}%")
        if self.gpu_other_procs:
            parts.append(f"{self.gpu_other_procs} other process(es) on the GPU")
        return ", ".join(parts)


def is_contended(other_cores: float, steal_cores: float, cell_cores: int, logical_cores: int) -> bool:
    spare = max(0, logical_cores - cell_cores)
    return other_cores + max(steal_cores, 0.0) > spare + CONTENDED_CORES


class ContentionMeter:
    """Brackets a region: ``start()`` and ``stop()`` -> ``HostContention`` for it.

    ``cell_cores`` is the number of intra-op threads the cell runs with; readings are
    injectable (tests simulate a neighbour). ``gpu_processes`` returns the PIDs using
    the cell's GPU (NVML), or None on CPU or where NVML cannot tell.
    """

    def __init__(
        self,
        cell_cores: int,
        *,
        logical_cores: int | None = None,
        read_host: Callable[[], HostCpu | None] = read_host_cpu,
        read_own: Callable[[], float] = read_own_cpu_s,
        read_load: Callable[[], float] = read_load_1m,
        gpu_processes: Callable[[], list[int] | None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        own_pids: tuple[int, ...] = (),
        tick_s: float = 1 / _TICKS_PER_S,
    ) -> None:
        self.cell_cores = max(1, cell_cores)
        self.logical_cores = logical_cores or os.cpu_count() or 1
        self._read_host, self._read_own, self._read_load = read_host, read_own, read_load
        self._gpu_processes = gpu_processes
        self._clock = clock
        self._own_pids = {os.getpid(), os.getppid(), *own_pids}
        self._tick_s = tick_s  # the counters' resolution (tests with exact readings pass 0)
        self._start: tuple[float, HostCpu | None, float] | None = None

    def start(self) -> None:
        self._start = (self._clock(), self._read_host(), self._read_own())

    def stop(self) -> HostContention:
        if self._start is None:
            raise RuntimeError("ContentionMeter.stop() before start()")
        t0, host0, own0 = self._start
        wall = self._clock() - t0
        host1, own1 = self._read_host(), self._read_own()
        gpu_others = self._gpu_others()
        load = self._read_load()
        if host0 is None or host1 is None or wall <= 0:
            return HostContention(
                load_avg_1m=load, gpu_other_procs=gpu_others, contended=bool(gpu_others) or None
            )
        # Both counters tick (1/CLK_TCK, 10 ms): each core's count and our user and system times can each be
        # a tick off, so that much of a difference is rounding, not a neighbour. Without this a converged
        # cell timed for 15 ms read one stray tick as 0.7 cores of others (seen on an idle machine).
        slack_s = (self.logical_cores + 2) * self._tick_s
        other_cores = max(0.0, (host1.busy_s - host0.busy_s) - (own1 - own0) - slack_s) / wall
        steal_cores = max(0.0, host1.steal_s - host0.steal_s - self.logical_cores * self._tick_s) / wall
        contended = is_contended(other_cores, steal_cores, self.cell_cores, self.logical_cores)
        return HostContention(
            host_busy_pct=100.0 * other_cores / self.cell_cores,
            contended=contended or bool(gpu_others),
            steal_pct=100.0 * steal_cores / self.logical_cores,
            load_avg_1m=load,
            gpu_other_procs=gpu_others,
            other_cores=other_cores,
        )

    def _gpu_others(self) -> int | None:
        if self._gpu_processes is None:
            return None
        pids = self._gpu_processes()
        return None if pids is None else len(set(pids) - self._own_pids)


def sample_contention(
    meter: ContentionMeter, seconds: float, sleep: Callable[[float], None] = time.sleep
) -> HostContention:
    """Watch an idle window of ``seconds``: what others use while we do nothing (the pre-run check, peaks)."""
    meter.start()
    sleep(seconds)
    return meter.stop()


def busy_before_run(threads: int, seconds: float = 0.5, meter: ContentionMeter | None = None) -> str | None:
    """One line saying the machine is already busy (and what to do), or None when it looks free."""
    reading = sample_contention(meter or ContentionMeter(threads), seconds)
    if not reading.contended:
        return None
    return (
        f"the machine is busy before the run: {reading.describe()}, load average {reading.load_avg_1m:.2f}; "
        "numbers taken now will be marked contended: close the other process, or run with --threads 1"
    )


def gpu_process_reader(nvml: Any) -> Callable[[], list[int] | None]:
    """PIDs of the compute processes NVML sees on ``nvml``'s GPU (None where it refuses)."""

    def read() -> list[int] | None:
        try:
            return [p.pid for p in nvml.compute_processes()]
        except Exception:
            return None

    return read
