"""The soak's live panel: the current values and a sparkline of the last minute of each, redrawn as rows come.

The worker process measures and appends rows to a live file (bench.measure.monitor.LiveFile);
the parent process, which owns the console, tails it (``follow_live``) and redraws
``soak_panel`` with rich's Live display. The panel is a pure function of the rows, so
tests render it to text without a terminal. A GPU line appears only when that reading
has a value (nothing is drawn for a CPU soak's NaN readings).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bench.core.numbers import num
from bench.measure.monitor import LiveTail

BARS = "▁▂▃▄▅▆▇█"
#: seconds of history a sparkline covers
HISTORY_S = 60.0
SPARK_WIDTH = 60

#: (row column, label, unit, whether the line is shown while it has no value)
PANEL_LINES: tuple[tuple[str, str, str, bool], ...] = (
    ("achieved_qps", "throughput", "req/s", True),
    ("latency_ms_p50", "latency p50", "ms", True),
    ("latency_ms_p99", "latency p99", "ms", True),
    ("host_rss_mb", "host RSS", "MB", True),
    ("torch_device_mem_mb", "device mem (torch)", "MB", False),
    ("nvml_device_mem_mb", "device mem (NVML)", "MB", False),
    ("gpu_util_pct", "GPU util", "%", False),
    ("gpu_power_w", "GPU power", "W", False),
    ("sm_clock_mhz", "SM clock", "MHz", False),
    ("gpu_temp_c", "GPU temp", "C", False),
    ("cpu_util_pct", "CPU util", "%", True),
    ("steal_pct", "CPU steal", "%", False),
)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sparkline(values: Sequence[float | None], width: int = SPARK_WIDTH) -> str:
    """One character per value (the last ``width``), scaled from the lowest to the highest; a gap is a space.

    A constant series draws at the lowest bar: a flat line, which is what it is.
    """
    values = list(values)[-width:]
    finite = [v for v in (_finite(x) for x in values) if v is not None]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    chars = []
    for value in values:
        number = _finite(value)
        if number is None:
            chars.append(" ")
        elif span == 0:
            chars.append(BARS[0])
        else:
            chars.append(BARS[min(len(BARS) - 1, int((number - low) / span * len(BARS)))])
    return "".join(chars)


def soak_panel(rows: Sequence[dict[str, Any]], title: str = "soak", history_s: float = HISTORY_S) -> Panel:
    """The panel for the latest ``rows``: one line per reading with its value now, its range and sparkline
    over the last ``history_s`` seconds."""
    if not rows:
        return Panel(Text("waiting for the first reading..."), title=title, border_style="blue")
    last = rows[-1]
    t_now = _finite(last.get("t_s")) or 0.0
    recent = [r for r in rows if (_finite(r.get("t_s")) or 0.0) > t_now - history_s]
    table = Table(box=None, pad_edge=False, expand=False)
    table.add_column("reading")
    table.add_column("now", justify="right")
    table.add_column(f"min .. max, last {history_s:.0f} s", justify="right")
    table.add_column("trend")
    for column, label, unit, always in PANEL_LINES:
        series = [_finite(r.get(column)) for r in recent]
        present = [v for v in series if v is not None]
        if not present and not always:
            continue
        now = _finite(last.get(column))
        table.add_row(
            label,
            f"{num(now)} {unit}" if now is not None else "-",
            f"{num(min(present))} .. {num(max(present))}" if present else "-",
            Text(sparkline(series), style="cyan"),
        )
    header = Text(
        f"t = {t_now:,.0f} s   completed {_count(last.get('completed_total'))}   "
        f"dropped {_count(last.get('dropped_total'))}"
    )
    return Panel(Group(header, table), title=title, border_style="blue")


def _count(value: Any) -> str:
    number = _finite(value)
    return "-" if number is None else f"{int(number):,}"


class SoakPanel:
    """Keeps the rows seen so far (the last ``history_s`` of them suffice) and renders the panel for them."""

    def __init__(self, title: str = "soak", history_s: float = HISTORY_S) -> None:
        self.title = title
        self.history_s = history_s
        self.rows: list[dict[str, Any]] = []

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        if self.rows:
            t_now = _finite(self.rows[-1].get("t_s")) or 0.0
            self.rows = [r for r in self.rows if (_finite(r.get("t_s")) or 0.0) > t_now - self.history_s]

    def render(self) -> Panel:
        return soak_panel(self.rows, self.title, self.history_s)

    def __rich__(self) -> Panel:
        return self.render()


def follow_live(
    path: Path, console: Console, stop_event: threading.Event, title: str = "soak", refresh_s: float = 0.5
) -> SoakPanel:
    """Redraw the panel from the live file at ``path`` every ``refresh_s`` until ``stop_event`` is set.

    Returns the panel (its last rows) so the caller can print it once more when the soak ends.
    """
    from rich.live import Live

    panel = SoakPanel(title)
    tail = LiveTail(path)
    with Live(
        panel.render(), console=console, refresh_per_second=max(1.0, 1 / refresh_s), transient=False
    ) as live:
        while True:
            stopping = stop_event.wait(refresh_s)
            new = tail.read_new()
            if new:
                panel.add(new)
                live.update(panel.render())
            if stopping:
                break
    return panel
