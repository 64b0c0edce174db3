"""The Prometheus endpoint, scraped over real HTTP on localhost and parsed with prometheus_client's own parser."""

from __future__ import annotations

import math
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from bench.core.errors import EnvironmentProblem, UsageError
from bench.measure.monitor import PROBE_COLUMNS, Monitor
from bench.serving import metrics as metrics_module
from bench.serving.live import Completion, LiveCounters
from bench.serving.metrics import MetricsExporter
from tests.bench.measure.fakes import FakeClock

parser = pytest.importorskip("prometheus_client.parser")  # the serve extra

LABELS = {"model": "dcgan", "pipeline": "fp32", "device": "cpu", "cell": "7"}
NAN = math.nan


def cpu_row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: NAN for c in PROBE_COLUMNS}
    row |= {"t_s": 1.0, "achieved_qps": 3.0, "completed_total": 3, "dropped_total": 0}
    row |= {"host_rss_mb": 500.0, "cpu_util_pct": 42.0, "steal_pct": 1.5}
    return row | values


def scrape(port: int) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """metric family -> {(sample name, labels): value}, from an HTTP GET of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    families: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in parser.text_string_to_metric_families(text):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families


def value(families: dict[str, Any], family: str, sample: str | None = None, **extra: str) -> float | None:
    key = (sample or family, tuple(sorted((LABELS | extra).items())))
    return families.get(family, {}).get(key)


@pytest.fixture
def exporter() -> Iterator[MetricsExporter]:
    with MetricsExporter(0, LABELS, addr="127.0.0.1") as started:
        yield started


def test_histograms_counters_and_gauges_over_http(exporter: MetricsExporter) -> None:
    completions = [
        Completion(0.5, 0.004, 0.001, 1),
        Completion(0.8, 0.020, 0.010, 4),
        Completion(0.9, 0.3, 0.2, 4),
    ]
    exporter.on_row(cpu_row(dropped_total=2), completions)
    families = scrape(exporter.port)

    latency = "genbench_request_latency_seconds"
    assert value(families, latency, f"{latency}_count") == 3
    assert value(families, latency, f"{latency}_sum") == pytest.approx(0.324)
    assert value(families, latency, f"{latency}_bucket", le="0.005") == 1  # cumulative buckets
    assert value(families, latency, f"{latency}_bucket", le="0.025") == 2
    assert value(families, latency, f"{latency}_bucket", le="+Inf") == 3
    assert value(families, "genbench_queue_seconds", "genbench_queue_seconds_sum") == pytest.approx(0.211)
    assert value(families, "genbench_batch_size", "genbench_batch_size_bucket", le="2.0") == 1
    assert value(families, "genbench_requests", "genbench_requests_total") == 3
    assert value(families, "genbench_requests_dropped", "genbench_requests_dropped_total") == 2
    assert value(families, "genbench_achieved_qps") == 3.0
    assert value(families, "genbench_host_rss_bytes") == 500 * 2**20
    assert value(families, "genbench_cpu_utilization_ratio") == pytest.approx(0.42)
    assert value(families, "genbench_cpu_steal_ratio") == pytest.approx(0.015)


def test_counters_add_only_what_is_new(exporter: MetricsExporter) -> None:
    exporter.on_row(cpu_row(dropped_total=2), [Completion(0.5, 0.01, 0.0, 1)])
    exporter.on_row(cpu_row(dropped_total=5), [Completion(1.5, 0.01, 0.0, 1), Completion(1.6, 0.01, 0.0, 1)])
    exporter.on_row(cpu_row(dropped_total=5), [])
    families = scrape(exporter.port)
    assert value(families, "genbench_requests", "genbench_requests_total") == 3
    assert value(families, "genbench_requests_dropped", "genbench_requests_dropped_total") == 5
    latency = "genbench_request_latency_seconds"
    assert value(families, latency, f"{latency}_count") == 3


def test_a_nan_reading_is_absent_not_zero(exporter: MetricsExporter) -> None:
    exporter.on_row(cpu_row(), [])
    families = scrape(exporter.port)
    for name in (
        "genbench_gpu_power_watts",
        "genbench_gpu_sm_clock_hertz",
        "genbench_gpu_temperature_celsius",
    ):
        assert not families.get(name), name  # declared, but no series: "no data", not 0 W
    assert not families.get("genbench_device_memory_bytes")

    gpu = cpu_row(
        gpu_power_w=412.0, sm_clock_mhz=1980.0, gpu_temp_c=71.0, gpu_util_pct=97.0,
        torch_device_mem_mb=1024.0, nvml_device_mem_mb=2048.0,
    )  # fmt: skip
    exporter.on_row(gpu, [])
    families = scrape(exporter.port)
    assert value(families, "genbench_gpu_power_watts") == 412.0
    assert value(families, "genbench_gpu_sm_clock_hertz") == 1.98e9
    assert value(families, "genbench_gpu_temperature_celsius") == 71.0
    assert value(families, "genbench_gpu_utilization_ratio") == pytest.approx(0.97)
    assert value(families, "genbench_device_memory_bytes", source="torch") == 2**30
    assert value(families, "genbench_device_memory_bytes", source="nvml") == 2 * 2**30

    exporter.on_row(gpu | {"gpu_power_w": NAN}, [])  # NVML stopped answering: the stale value goes
    families = scrape(exporter.port)
    assert value(families, "genbench_gpu_power_watts") is None
    assert value(families, "genbench_gpu_temperature_celsius") == 71.0


def test_every_series_carries_the_cell_labels(exporter: MetricsExporter) -> None:
    exporter.on_row(cpu_row(), [Completion(0.5, 0.01, 0.0, 1)])
    families = scrape(exporter.port)
    assert families
    for name, samples in families.items():
        assert name.startswith("genbench_")  # an own registry: no process_* or python_* of the global one
        for _, labels in samples:
            assert set(LABELS.items()) <= set(labels)


def test_a_monitor_feeds_the_exporter() -> None:
    counters, clock = LiveCounters(), FakeClock()
    with MetricsExporter(0, LABELS, addr="127.0.0.1") as exporter:
        probe = type("Probe", (), {"read": lambda self: cpu_row()})()
        monitor = Monitor(counters, probe, on_row=[exporter], clock=clock, start_s=0.0)
        for i in range(5):
            counters.completed(0.1 * (i + 1), 0.050, 0.010, 1)
        monitor.tick(1.0)
        families = scrape(exporter.port)
    assert value(families, "genbench_requests", "genbench_requests_total") == 5
    assert value(families, "genbench_achieved_qps") == 5.0  # from the monitor's row, not the probe's
    assert not monitor.errors


def test_two_exporters_do_not_share_a_registry() -> None:
    with (
        MetricsExporter(0, LABELS, addr="127.0.0.1") as first,
        MetricsExporter(0, LABELS | {"cell": "8"}, addr="127.0.0.1") as second,
    ):
        first.on_row(cpu_row(), [Completion(0.5, 0.01, 0.0, 1)])
        assert value(scrape(first.port), "genbench_requests", "genbench_requests_total") == 1
        assert (
            not scrape(second.port)
            .get("genbench_requests", {})
            .get(("genbench_requests_total", tuple(sorted((LABELS | {"cell": "8"}).items()))))
        )


def test_close_frees_the_port() -> None:
    exporter = MetricsExporter(0, LABELS, addr="127.0.0.1")
    port = exporter.port
    exporter.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    MetricsExporter(port, LABELS, addr="127.0.0.1").close()  # bindable again


def test_a_port_in_use_is_one_line_naming_it() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EnvironmentProblem) as caught:
            MetricsExporter(port, LABELS, addr="127.0.0.1")
    message = str(caught.value)
    assert f"--metrics-port {port}" in message and "already in use" in message
    assert "\n" not in message


def test_bad_ports_and_labels_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="65535"):
        MetricsExporter(70000, LABELS)
    with pytest.raises(UsageError, match="model, pipeline, device, cell"):
        MetricsExporter(0, {"model": "dcgan"})


def test_without_prometheus_client_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "installed", lambda module: False)
    with pytest.raises(UsageError) as caught:
        MetricsExporter(0, LABELS, addr="127.0.0.1")
    assert "prometheus-client" in str(caught.value) and "[serve]" in str(caught.value)
