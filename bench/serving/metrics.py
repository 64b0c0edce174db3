"""The soak's live values as Prometheus metrics (``--metrics-port``), for a team's own Prometheus and Grafana.

``MetricsExporter`` is a Monitor sink (bench.measure.monitor): each row sets the gauges
and each completion is observed once in the histograms. It serves its own
``CollectorRegistry``, not prometheus_client's global one, so two exporters (tests, or a
run that restarts one) never collide and the endpoint holds genbench's metrics only
(no process_* or python_* collectors of the library's default registry).

Names follow Prometheus's conventions (https://prometheus.io/docs/practices/naming/):
base units (seconds, bytes, hertz, watts, celsius), 0..1 ``_ratio`` instead of percent,
``_total`` on counters. Every series carries the cell's constant labels (model,
pipeline, device, cell), so several benchmarks scraped by one Prometheus stay apart.

A reading that is NaN (no GPU, NVML refused) leaves its gauge series absent, not 0: a
Grafana panel then shows "no data" instead of a GPU drawing 0 W. A series that had a
value and then reads NaN is removed again (a stale value is worse than none).

Latency histogram buckets run from 1 ms to 5 minutes (a forward call of a small model
to a long generation), roughly 1-2.5-5 per decade, so ``histogram_quantile`` reads p50
and p99 to within a bucket's width at any of those scales.
"""

from __future__ import annotations

import errno
import math
import threading
from typing import Any

from bench.core.errors import EnvironmentProblem, UsageError
from bench.core.optional import install_hint, installed
from bench.serving.live import Completion

#: request latency and queue time buckets, seconds: 1 ms .. 5 min
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0,
)  # fmt: skip
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: the constant labels every series carries
LABELS: tuple[str, ...] = ("model", "pipeline", "device", "cell")

#: gauge name -> (help, the time-series row's column, factor from the column's unit to the base unit)
GAUGES: dict[str, tuple[str, str, float]] = {
    "genbench_achieved_qps": (
        "Requests completed per second over the last monitor interval",
        "achieved_qps",
        1.0,
    ),
    "genbench_host_rss_bytes": ("Resident memory of the measuring process", "host_rss_mb", 2.0**20),
    "genbench_gpu_utilization_ratio": ("Share of time a kernel ran on the GPU (NVML)", "gpu_util_pct", 0.01),
    "genbench_gpu_power_watts": ("GPU board power (NVML)", "gpu_power_w", 1.0),
    "genbench_gpu_sm_clock_hertz": ("GPU SM clock (NVML)", "sm_clock_mhz", 1e6),
    "genbench_gpu_temperature_celsius": ("GPU temperature (NVML)", "gpu_temp_c", 1.0),
    "genbench_cpu_utilization_ratio": ("Busy share of all the machine's logical cores", "cpu_util_pct", 0.01),
    "genbench_cpu_steal_ratio": (
        "Share of all logical cores the hypervisor gave to other guests",
        "steal_pct",
        0.01,
    ),
}
#: genbench_device_memory_bytes{source=...} -> the row's column
DEVICE_MEMORY_SOURCES: dict[str, str] = {"torch": "torch_device_mem_mb", "nvml": "nvml_device_mem_mb"}


def _prometheus() -> Any:
    if not installed("prometheus_client"):
        raise UsageError(
            f"--metrics-port needs prometheus-client, which is not installed ({install_hint('serve')})"
        )
    import prometheus_client

    return prometheus_client


class MetricsExporter:
    """Serves a soak's metrics over HTTP at ``http://addr:port/metrics`` (any path answers) until ``close()``.

    ``port`` 0 takes a free port (``self.port`` says which). A port in use, or one this user may
    not bind, is an EnvironmentProblem naming it; ``labels`` must name exactly LABELS.
    """

    def __init__(self, port: int, labels: dict[str, str], addr: str = "0.0.0.0") -> None:
        if not 0 <= port <= 65535:
            raise UsageError(
                f"--metrics-port must be a TCP port from 1 to 65535, or 0 for any free one (got {port})"
            )
        if set(labels) != set(LABELS):
            raise UsageError(f"metrics labels must be {', '.join(LABELS)} (got {', '.join(sorted(labels))})")
        prometheus = _prometheus()
        self.labels = {name: str(labels[name]) for name in LABELS}
        self._values = tuple(self.labels.values())
        self._lock = threading.Lock()
        self._dropped_seen = 0
        self.registry = prometheus.CollectorRegistry(auto_describe=True)
        names = list(LABELS)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            metric = prometheus.Histogram(name, doc, names, registry=self.registry, buckets=buckets)
            return metric.labels(*self._values)  # the series exists (all zeros) from the start

        self.latency = histogram(
            "genbench_request_latency_seconds",
            "Request latency from scheduled arrival to completion",
            LATENCY_BUCKETS_S,
        )
        self.queue = histogram(
            "genbench_queue_seconds", "Time a request waited before its batch started", LATENCY_BUCKETS_S
        )
        self.batch = histogram(
            "genbench_batch_size", "Size of the batch each request was served in", BATCH_BUCKETS
        )
        self.completed = prometheus.Counter(
            "genbench_requests", "Requests completed", names, registry=self.registry
        ).labels(*self._values)
        self.dropped = prometheus.Counter(
            "genbench_requests_dropped", "Requests the server gave up on", names, registry=self.registry
        ).labels(*self._values)
        self.gauges = {
            name: prometheus.Gauge(name, doc, names, registry=self.registry)
            for name, (doc, _, _) in GAUGES.items()
        }
        self.device_memory = prometheus.Gauge(
            "genbench_device_memory_bytes",
            "Device memory: torch's allocated memory (source=torch) or the device's used memory (source=nvml)",
            [*names, "source"],
            registry=self.registry,
        )
        try:
            self._server, self._thread = prometheus.start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise EnvironmentProblem(_bind_error(port, addr, exc)) from None
        self.port = int(self._server.server_port)
        self.addr = addr

    # ------------------------------------------------------------------ the Monitor sink
    def __call__(self, row: dict[str, Any], new_completions: list[Completion]) -> None:
        self.on_row(row, new_completions)

    def on_row(self, row: dict[str, Any], new_completions: list[Completion]) -> None:
        """Observe each new completion once; set every gauge from the row (absent where the row has NaN)."""
        with self._lock:
            for done in new_completions:
                self.latency.observe(done.latency_s)
                self.queue.observe(done.queue_s)
                self.batch.observe(done.batch_size)
            if new_completions:
                self.completed.inc(len(new_completions))
            dropped = int(row.get("dropped_total") or 0)
            if dropped > self._dropped_seen:
                self.dropped.inc(dropped - self._dropped_seen)
                self._dropped_seen = dropped
            for name, (_, column, factor) in GAUGES.items():
                self._set(self.gauges[name], self._values, row.get(column), factor)
            for source, column in DEVICE_MEMORY_SOURCES.items():
                self._set(self.device_memory, (*self._values, source), row.get(column), 2.0**20)

    @staticmethod
    def _set(gauge: Any, values: tuple[str, ...], value: Any, factor: float) -> None:
        number = float(value) if value is not None else math.nan
        if math.isfinite(number):
            gauge.labels(*values).set(number * factor)
        else:
            gauge.remove(*values)

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bind_error(port: int, addr: str, exc: OSError) -> str:
    where = f"{addr}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"--metrics-port {port}: {where} is already in use by another process; choose another port"
    if exc.errno == errno.EACCES:
        return f"--metrics-port {port}: not permitted to listen on {where} (ports under 1024 need privileges)"
    return f"--metrics-port {port}: cannot listen on {where}: {exc.strerror or exc}"
