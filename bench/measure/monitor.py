"""A soak's pulse, once a second: what the server completed, and what the machine was doing meanwhile.

``Monitor`` is a daemon thread beside the serving thread. Every ``interval_s`` it drains
the completions since its last tick from ``LiveCounters``, reads the windowed latency
percentiles, asks a ``SystemProbe`` for one reading of the machine, and builds one row
of ``timeseries.csv`` (TIMESERIES_COLUMNS without ``cell_id``, which the harness fills).
Each row and the completions it counted go to the sinks (``on_row``): the Prometheus
exporter (bench.serving.metrics) and ``LiveFile``, the JSON-lines file the parent process
tails for the live panel (bench.render.live) while the worker process measures.

Everything the thread does is in ``tick(now)``, and the clock is injectable, so tests
drive a soak second by second without sleeping.

A GPU reading is NaN on CPU, without nvidia-ml-py, or where NVML refuses; it is never
invented. CPU utilization and steal are the whole machine's (``/proc/stat``, every
process), as shares of all logical cores over the interval since the previous reading.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bench.core.device import Device
from bench.measure.contention import HostCpu, read_host_cpu
from bench.measure.nvml import Nvml

if TYPE_CHECKING:  # bench.serving sits above measure: its types are named, never imported at run time
    from bench.serving.live import Completion, LiveCounters

NAN = float("nan")
#: the row's columns: bench.results.schema.TIMESERIES_COLUMNS in its order, less the harness's cell_id
#: (spelled out, not imported: results sits above measure; a test holds the two equal)
ROW_COLUMNS: tuple[str, ...] = (
    "t_s", "achieved_qps", "latency_ms_p50", "latency_ms_p99", "completed_total", "dropped_total", "host_rss_mb",
    "torch_device_mem_mb", "nvml_device_mem_mb", "gpu_util_pct", "gpu_power_w", "sm_clock_mhz", "gpu_temp_c",
    "cpu_util_pct", "steal_pct",
)  # fmt: skip
#: what a SystemProbe reading holds
PROBE_COLUMNS: tuple[str, ...] = (
    "host_rss_mb", "torch_device_mem_mb", "nvml_device_mem_mb", "gpu_util_pct", "gpu_power_w",
    "sm_clock_mhz", "gpu_temp_c", "cpu_util_pct", "steal_pct",
)  # fmt: skip
#: the row columns that are counts, not measurements (written as integers, never NaN)
INT_COLUMNS: frozenset[str] = frozenset({"completed_total", "dropped_total"})

Sink = Callable[[dict[str, Any], "list[Completion]"], None]


class Probe(Protocol):
    def read(self) -> dict[str, float]: ...


# ------------------------------------------------------------------ the machine
def _nvml_call(nvml: Nvml | None, method: str, fallback: Callable[[Any, Any], float]) -> float:
    """A reading through the ``Nvml`` wrapper's ``method``; a stand-in without it (a test's) goes through
    pynvml directly with the wrapper's module and handle."""
    if nvml is None:
        return NAN
    try:
        if hasattr(nvml, method):
            return float(getattr(nvml, method)())
        return float(fallback(nvml._nvml, nvml._handle))  # the wrapper's own module and handle: see above
    except Exception:  # NVMLError_NotSupported / NoPermission (vGPUs, MIG slices, containers)
        return NAN


def gpu_utilization_pct(nvml: Nvml | None) -> float:
    """Share of the last sample period in which a kernel ran on the GPU, % (NVML's coarse 'utilization')."""
    return _nvml_call(nvml, "utilization_pct", lambda lib, h: lib.nvmlDeviceGetUtilizationRates(h).gpu)


def device_memory_used_mb(nvml: Nvml | None) -> float:
    """The device's used memory, every process and allocator, in MB (NVML's memory info)."""
    return _nvml_call(nvml, "memory_used_mb", lambda lib, h: lib.nvmlDeviceGetMemoryInfo(h).used / 2**20)


def throttle_limits(nvml: Nvml | None) -> tuple[float, float]:
    """(slowdown temperature C, enforced power limit W) for bench.analysis.soak's throttling check; NaN where
    NVML does not say (CPU, no NVML, a GPU that does not report it)."""
    temp = _nvml_call(
        nvml,
        "slowdown_temp_c",
        lambda lib, h: lib.nvmlDeviceGetTemperatureThreshold(h, lib.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN),
    )
    power = _nvml_call(nvml, "power_limit_w", lambda lib, h: lib.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0)
    return temp, power


def _process_rss_mb() -> Callable[[], float]:
    import psutil

    process = psutil.Process()
    return lambda: process.memory_info().rss / 2**20


class SystemProbe:
    """One reading of the machine (``PROBE_COLUMNS``) each ``read()``.

    ``device`` decides whether torch's allocator is asked (CUDA only); ``nvml`` is the
    GPU's NVML wrapper or None. The CPU shares cover the interval since the previous
    ``read()`` (the first: since construction). Readers are injectable for tests.
    """

    def __init__(
        self,
        device: Device,
        nvml: Nvml | None,
        *,
        read_host: Callable[[], HostCpu | None] = read_host_cpu,
        read_rss_mb: Callable[[], float] | None = None,
        logical_cores: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.device = device
        self.nvml = nvml
        self._read_host = read_host
        self._read_rss_mb = read_rss_mb or _process_rss_mb()
        self._cores = logical_cores or os.cpu_count() or 1
        self._clock = clock
        self._last = (clock(), read_host())

    def read(self) -> dict[str, float]:
        reading = {
            "host_rss_mb": self._read_rss_mb(),
            "torch_device_mem_mb": self._torch_allocated_mb(),
            "nvml_device_mem_mb": device_memory_used_mb(self.nvml),
            "gpu_util_pct": gpu_utilization_pct(self.nvml),
            **self._gpu(),
            **self._cpu(),
        }
        return reading

    def _torch_allocated_mb(self) -> float:
        if not self.device.is_cuda:
            return NAN
        import torch

        return torch.cuda.memory_allocated(self.device.torch_name) / 2**20

    def _gpu(self) -> dict[str, float]:
        if self.nvml is None:
            return {"gpu_power_w": NAN, "sm_clock_mhz": NAN, "gpu_temp_c": NAN}
        state = self.nvml.state()
        return {
            "gpu_power_w": self.nvml.power_w(),
            "sm_clock_mhz": state.sm_clock_mhz,
            "gpu_temp_c": state.temperature_c,
        }

    def _cpu(self) -> dict[str, float]:
        now, host = self._clock(), self._read_host()
        (then, before), self._last = self._last, (now, host)
        wall = now - then
        if host is None or before is None or wall <= 0:
            return {"cpu_util_pct": NAN, "steal_pct": NAN}
        # the counters tick per core (10 ms): over a short interval a share can round past 100%
        capacity = wall * self._cores
        return {
            "cpu_util_pct": min(100.0, 100.0 * max(0.0, host.busy_s - before.busy_s) / capacity),
            "steal_pct": min(100.0, 100.0 * max(0.0, host.steal_s - before.steal_s) / capacity),
        }


# ------------------------------------------------------------------ the thread
class Monitor:
    """Builds one time-series row every ``interval_s`` and hands it to each sink (module docstring).

    ``clock`` must be the clock the server stamps completions with (LiveCounters' times);
    ``start_s`` is the soak's start on it (default: when ``start()`` is called, or one
    interval before the first ``tick``). A sink that raises is dropped and a probe that raises
    gives NaN readings, the error kept in ``errors`` either way: a failing Prometheus endpoint
    or NVML call must not end a soak's measurement.
    """

    def __init__(
        self,
        counters: LiveCounters,
        probe: Probe,
        interval_s: float = 1.0,
        window_s: float = 10.0,
        on_row: Sequence[Sink] = (),
        *,
        clock: Callable[[], float] = time.perf_counter,
        start_s: float | None = None,
    ) -> None:
        if not interval_s > 0 or not window_s > 0:
            raise ValueError(f"interval_s and window_s must be positive, got {interval_s} and {window_s}")
        self.counters = counters
        self.probe = probe
        self.interval_s = interval_s
        self.window_s = window_s
        self.sinks: list[Sink] = list(on_row)
        self.errors: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self._clock = clock
        self._start_s = start_s
        self._last_s: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now_s: float | None = None) -> dict[str, Any]:
        """Build, keep and hand on one row for the interval ending at ``now_s`` (default: the clock now)."""
        with self._lock:
            now = self._clock() if now_s is None else now_s
            if self._start_s is None:
                self._start_s = now - self.interval_s
            since = self._start_s if self._last_s is None else self._last_s
            self._last_s = now
            new = self.counters.drain_new()
            window = self.counters.window(now, self.window_s)
            elapsed = now - since
            row: dict[str, Any] = {
                "t_s": now - self._start_s,
                "achieved_qps": len(new) / elapsed if elapsed > 0 else NAN,
                "latency_ms_p50": window.latency_ms_p50,
                "latency_ms_p99": window.latency_ms_p99,
                "completed_total": self.counters.completed_total,
                "dropped_total": self.counters.dropped_total,
            }
            reading = self._read_probe()
            row.update({column: float(reading.get(column, NAN)) for column in PROBE_COLUMNS})
            row = {column: row[column] for column in ROW_COLUMNS}
            self.rows.append(row)
            for sink in list(self.sinks):
                try:
                    sink(row, new)
                except Exception as exc:
                    self.sinks.remove(sink)
                    self.errors.append(f"{getattr(sink, '__qualname__', type(sink).__name__)}: {exc}")
            return row

    def _read_probe(self) -> dict[str, float]:
        """The probe's reading; NaN throughout (and the error kept, once) when it raises: a row is still due."""
        try:
            return self.probe.read()
        except Exception as exc:
            message = f"{type(self.probe).__name__}: {exc}"
            if message not in self.errors:
                self.errors.append(message)
            return {}

    def start(self) -> None:
        """Tick every ``interval_s`` on a daemon thread until ``stop()``, on a fixed schedule (no drift)."""
        if self._thread is not None:
            raise RuntimeError("Monitor.start() called twice")
        if self._start_s is None:
            self._start_s = self._clock()
        self._thread = threading.Thread(target=self._run, name="genbench-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._start_s is not None
        due = self._start_s + self.interval_s
        while not self._stop.wait(max(0.0, due - self._clock())):
            self.tick()
            due += self.interval_s
            behind = self._clock() - due
            if behind > self.interval_s:  # a stalled tick (a swapped-out process): skip, don't burst
                due += self.interval_s * math.floor(behind / self.interval_s)

    def stop(self) -> list[dict[str, Any]]:
        """End the thread (the interval under way is not recorded) and return every row."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return list(self.rows)


# ------------------------------------------------------------------ the live file
def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; read_live turns null back into NaN
    return value


class LiveFile:
    """A sink writing each row as one JSON line, flushed at once, for another process to tail."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def __call__(self, row: dict[str, Any], new_completions: list[Completion]) -> None:
        self.on_row(row, new_completions)

    def on_row(self, row: dict[str, Any], new_completions: list[Completion] | None = None) -> None:
        line = json.dumps({k: _json_value(v) for k, v in row.items()}, separators=(",", ":"))
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _row_from_json(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (NAN if v is None and k not in INT_COLUMNS else v) for k, v in record.items()}


class LiveTail:
    """Reads a LiveFile as it grows: each ``read_new()`` returns the rows completed since the last one.

    A last line without its newline is a row being written: it is left for the next read.
    A line that is not JSON (a file cut short by a crash, then appended to) is skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        return list(_parse_lines(data[:end].decode("utf-8", errors="replace").splitlines()))


def _parse_lines(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield _row_from_json(record)


def read_live(path: Path) -> list[dict[str, Any]]:
    """Every complete row in a LiveFile (none when it does not exist yet); a half-written last line is left out."""
    return LiveTail(path).read_new()
