"""A watched load: the serving loop with a once-a-second time series, a live file, Prometheus, and a soak's verdicts.

``--soak DURATION`` runs the cell's scenario that long: a server soak offers the cell's
``--target-qps`` as a Poisson load; a single-stream soak calls the model back to back at the
cell's batch size (each call one request). Either way the monitor
(``bench.measure.monitor``) reads the serving thread's ``LiveCounters`` and the machine
once per second, on the serving clock, and hands each row to its sinks: the live file the
parent's panel tails, and the Prometheus exporter when ``--metrics-port`` is given. When the
load ends, the series is checked for drift, memory growth and throttling
(``bench.analysis.soak``), with the GPU's own slowdown temperature and power limit from NVML.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness.cell import Instruments
from bench.harness.config import ServingSettings
from bench.harness.plan import Cell
from bench.harness.result import CellIdentity
from bench.serving.clock import ClosedLoopSource, RealClock
from bench.serving.live import LiveCounters
from bench.serving.load import LoadResult, LoadSpec, result_of, run_threaded_load
from bench.serving.server import BatchingPolicy, LoadWindow, grace_of, serve, warmup_of


def live_path(run_id: str, cell_id: int) -> Path:
    """Where a soak's worker appends its time series as JSON lines, for the parent's live panel to tail."""
    return Path(tempfile.gettempdir()) / f"genbench-live-{run_id}-cell{cell_id:04d}.jsonl"


@dataclass
class Watched:
    """A load's time series and, for a soak, its verdicts (SOAK_COLUMNS rows)."""

    rows: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    sink_errors: list[str]


def watched_load(
    cell: Cell,
    identity: CellIdentity,
    serving: ServingSettings,
    serve_batch: Callable[[int], float],
    policy: BatchingPolicy,
    slowest_batch_s: float,
    new_tokens: int | None,
    tools: Instruments,
) -> tuple[LoadResult, Watched]:
    """Run the cell's load (its soak, or its one server load) under the monitor; the load and its series."""
    from bench.analysis.soak import WARMUP_S, soak_verdicts
    from bench.measure.monitor import LiveFile, Monitor, SystemProbe, throttle_limits

    counters = LiveCounters()
    clock = RealClock()
    with ExitStack() as closing:  # the port and the live file are released whatever fails, and where
        live = LiveFile(live_path(identity.run_id, cell.cell_id))
        closing.callback(live.close)
        sinks: list[Any] = [live]
        if serving.metrics_port is not None:
            from bench.serving.metrics import MetricsExporter

            labels = {"model": f"{cell.spec.name}-{cell.size}", "pipeline": cell.pipeline.text,
                      "device": identity.device_name, "cell": str(cell.cell_id)}  # fmt: skip
            exporter = MetricsExporter(serving.metrics_port, labels)
            closing.callback(lambda: suppress_errors(exporter.close))
            sinks.append(exporter)
        probe = SystemProbe(tools.device, tools.nvml)
        monitor = Monitor(counters, probe, on_row=sinks, clock=clock.now, start_s=0.0)
        monitor.start()
        closing.callback(monitor.stop)
        length = serving.soak_s if serving.soak_s is not None else serving.duration_s
        if cell.target_qps is not None:
            spec = LoadSpec(cell.target_qps, length, serving.seed, policy, serving.slo_p99_ms, new_tokens,
                            slowest_batch_s=slowest_batch_s)  # fmt: skip
            load = run_threaded_load(spec, serve_batch, counters, clock=clock)
        else:
            load = closed_loop(
                length, cell.batch_size, serve_batch, slowest_batch_s, counters, clock, new_tokens
            )
        monitor.stop()
        monitor.tick()  # one last row, with the drops the hard stop counted, before the sinks close
        rows = list(monitor.rows)
    verdicts: list[dict[str, Any]] = []
    if serving.soak_s is not None:
        temp_limit, power_limit = throttle_limits(tools.nvml)
        # the checks' own warm-up (30 s) when longer than the load's and shorter than the soak; the drain
        # after the last arrival left out
        window = load.window
        warmup = max(WARMUP_S, window.warmup_s) if window.end_s > WARMUP_S else window.warmup_s
        verdicts = soak_verdicts(
            rows, warmup_s=warmup, temp_limit_c=temp_limit, power_limit_w=power_limit, end_s=window.end_s
        )
    return load, Watched(rows, verdicts, list(monitor.errors))


def suppress_errors(close: Callable[[], Any]) -> None:
    """Close a sink at the end of a load; a failing close must not replace the load's own outcome."""
    with suppress(Exception):
        close()


def closed_loop(
    duration_s: float,
    batch_size: int,
    serve_batch: Callable[[int], float],
    slowest_batch_s: float,
    counters: LiveCounters,
    clock: RealClock,
    new_tokens: int | None,
) -> LoadResult:
    """Single-stream for ``duration_s``: the next call starts as the last ends; each call is one request."""
    window = LoadWindow(warmup_of(duration_s), duration_s, grace_of(duration_s, slowest_batch_s))
    # calls at the primed full-batch time, at most a million (56 MB of log) before the log doubles
    expected = min(int(window.end_s / max(slowest_batch_s, 1e-6)), 1_000_000)
    source = ClosedLoopSource(clock, window.end_s, expected)
    records = serve(source, lambda n: serve_batch(batch_size) - clock.start, clock, BatchingPolicy(1, 0.0),
                    window, counters)  # fmt: skip
    spec = LoadSpec(0.0, duration_s, 0, BatchingPolicy(1, 0.0), new_tokens=new_tokens,
                    slowest_batch_s=slowest_batch_s, warmup_s=window.warmup_s)  # fmt: skip
    for record in records:  # each request was one call at the cell's batch size
        if record.batch_size:
            record.batch_size = batch_size
    return result_of(spec, window, records)
